-- Symbols of this stack that multimap cannot express; force_actions.conf acts on them.

-- MAILSTACK_FROM_ADDRESS_IN_NAME: the From: header shows an address other than its own: in the
-- display name or a comment, quoted or not, in any case, inside angle brackets or not, and
-- after encoded words (=?utf-8?b?...?=) are decoded. A mail client shows the display name as
-- the author, so "bob@example.com" <alice@example.com> would read as Bob's. The address
-- itself repeated as the display name ("alice@example.com" <alice@example.com>) is no second
-- address and passes. Looks like an address: something@name.tld without spaces, after the
-- look-alikes below are read as "@" and ".". rspamd 3.4 gives Lua no NFKC, so the list holds
-- what NFKC or IDNA (which clients use to link a domain) make "@" or ".", and the characters
-- that Unicode's confusables (UTS #39) map to "." or to the middle dot. Left out: the Arabic
-- digit zeros U+0660 and U+06F0 (confusable with ".", but digits of names in Arabic script).
-- Also a From: with a bidirectional control character: a right-to-left override shows
-- "moc.elpmaxe@bob" as "bob@example.com", and no name needs one (a client orders the letters
-- of right-to-left scripts by itself).
local rspamd_regexp = require "rspamd_regexp"

local address_like = rspamd_regexp.create_cached(
  '/[^\\s<>()\\[\\]",;:@]+@[^\\s<>()\\[\\]",;:@.]+(?:\\.[^\\s<>()\\[\\]",;:@.]+)+/')

-- U+FF20 full-width and U+FE6B small at sign (NFKC).
local at_signs = { '\239\188\160', '\239\185\171' }
local dots = {
  -- NFKC or IDNA: U+2024 one dot leader, U+FE52 small, U+FF0E full-width, U+3002 ideographic
  -- and U+FF61 half-width ideographic full stop.
  '\226\128\164', '\239\185\146', '\239\188\142', '\227\128\130', '\239\189\161',
  -- Confusable with ".": U+06D4 Arabic full stop, U+0701 and U+0702 Syriac full stops, U+A60E
  -- Vai full stop, U+10A50 Kharoshthi dot, U+A4F8 Lisu tone mya ti, U+1D16D augmentation dot.
  '\219\148', '\220\129', '\220\130', '\234\152\142', '\240\144\169\144', '\234\147\184',
  '\240\157\133\173',
  -- The middle dot U+00B7 and what is confusable with it: U+2E33 raised dot, U+0387 Greek ano
  -- teleia, U+30FB and U+FF65 katakana middle dots, U+16EB runic punctuation, U+2E31 word
  -- separator, U+10101 Aegean dot, U+2022 bullet, U+2027 hyphenation point, U+2219 bullet
  -- and U+22C5 dot operators, U+A78F sinological dot, U+1427 Canadian syllabics middle dot.
  '\194\183', '\226\184\179', '\206\135', '\227\131\187', '\239\189\165', '\225\155\171',
  '\226\184\177', '\240\144\132\129', '\226\128\162', '\226\128\167', '\226\136\153',
  '\226\139\133', '\234\158\143', '\225\144\167',
}
-- U+061C Arabic letter mark, U+200E and U+200F marks, U+202A-U+202E embeddings and overrides,
-- U+2066-U+2069 isolates.
local bidi_controls = { '\216\156', '\226\128\142', '\226\128\143', '\226\128\170',
  '\226\128\171', '\226\128\172', '\226\128\173', '\226\128\174', '\226\129\166',
  '\226\129\167', '\226\129\168', '\226\129\169' }

local function has_bidi_control(text)
  for _, control in ipairs(bidi_controls) do
    if text:find(control, 1, true) then
      return true
    end
  end
  return false
end

-- The addresses ``text`` shows (look-alikes read as "@" and "."), lowercased; nil for none.
local function shown_addresses(text)
  for _, at_sign in ipairs(at_signs) do
    text = text:gsub(at_sign, '@')
  end
  for _, dot in ipairs(dots) do
    text = text:gsub(dot, '.')
  end
  return address_like:search(text:lower(), true)
end

local function other_addresses(text, own)
  if has_bidi_control(text) then
    return 'a bidirectional control character'
  end
  for _, address in ipairs(shown_addresses(text) or {}) do
    if address ~= own then
      return address
    end
  end
  return nil
end

-- Decoded and unfolded, and as it came (a client may decode what rspamd leaves).
local function header_texts(task, name)
  local texts = {}
  for _, header in ipairs(task:get_header_full(name) or {}) do
    table.insert(texts, header.decoded or header.value or '')
    table.insert(texts, header.raw or '')
  end
  return texts
end

rspamd_config:register_symbol({
  name = 'MAILSTACK_FROM_ADDRESS_IN_NAME',
  score = 0.0,
  group = 'headers',
  description = 'The display name or a comment of From: holds another address',
  callback = function(task)
    local from = task:get_from('mime')
    if not from or #from ~= 1 or not from[1].addr or from[1].addr == '' then
      return false
    end
    local own = from[1].addr:lower()
    for _, text in ipairs(header_texts(task, 'From')) do
      local other = other_addresses(text, own)
      if other then
        return true, other
      end
    end
    return false
  end,
})

-- MAILSTACK_SENDER_HEADER_OTHER: Sender:, Resent-From: or Resent-Sender: shows an address other than
-- the envelope sender, or none. A client shows "Sender: bob@..." as "bob@... on behalf of
-- alice@...", and DKIM signs it; the envelope sender is one the login owns (Postfix checked it),
-- so these headers are held to the From: header's rule (force_actions.conf).
rspamd_config:register_symbol({
  name = 'MAILSTACK_SENDER_HEADER_OTHER',
  score = 0.0,
  group = 'headers',
  description = 'Sender: or a Resent- header holds another address than the envelope sender',
  callback = function(task)
    local envelope = task:get_from('smtp')
    local own = envelope and envelope[1] and envelope[1].addr and envelope[1].addr:lower() or ''
    for _, name in ipairs({ 'Sender', 'Resent-From', 'Resent-Sender' }) do
      for _, text in ipairs(header_texts(task, name)) do
        local other = other_addresses(text, own)
        if other then
          return true, name .. ': ' .. other
        end
        if not shown_addresses(text) then
          return true, name .. ': no address'
        end
      end
    end
    return false
  end,
})

-- Messages too complex to scan are not scanned. rspamd 3.4 parses every MIME part and runs Lua
-- on each (type detection in the message processing stage, then every plugin's loop over the
-- parts) before any of its timeouts can act: a 25 MB message of a million tiny parts holds a
-- proxy process for minutes, and every milter session on it with it. This filter runs first
-- (a connection filter: before the message is even parsed), counts the boundary lines of the
-- raw message, and stops the scan of a message over the limits at once.
local rspamd_logger = require "rspamd_logger"

local max_parts = 1000 -- lines "--" + no white space (part boundaries)
local max_boundaries = 100 -- boundary declarations (nested multiparts)
local max_dash_lines = 10000 -- every line "--" + something (candidates)
-- spec.spam.onScanFailure: tempfail. Refused with 451: the sender retries, then bounces it.
local accept = false

-- Parts that exist only once rspamd decodes a part, which no raw line shows. rspamd parses the
-- body of a message/* part (but message/delivery-status and */*notification*) as a message of
-- its own after decoding it by its Content-Transfer-Encoding (base64, quoted-printable or
-- uuencode, taken from the header alone, and a part without one inherits its enclosing
-- message/* part's): a base64 message/rfc822 part of two raw "--" lines holds any number of
-- parts. RFC 2046 5.2.1 allows message/rfc822 in 7bit, 8bit and binary only, so such a part
-- is too complex. And it parses the content of S/MIME signed-data (*/*pkcs7-mime*, decoded
-- as its CTE says): a message hidden there is in no raw line either, so a pkcs7-mime part
-- passes only as what mail is encrypted in (the DER of enveloped or authEnvelopedData,
-- base64), which rspamd cannot open. A multipart's own CTE is ignored (it splits the raw
-- text at its boundaries), and archives and TNEF become no MIME parts.
-- The header blocks read are the message's, and each one after a line starting with "--" (a
-- part's) up to its first empty line (rspamd's end of headers never comes later), with the
-- block after it while the Content-Type is message/* (the enclosed message's own headers); a
-- block is read once, so this stays linear in the message's size.
local enveloped_oids = { "\6\9\42\134\72\134\247\13\1\7\3",
  "\6\11\42\134\72\134\247\13\1\9\16\1\23" }
local rspamd_util = require "rspamd_util"

-- Where the header block starting at the line break `from` ends, and the line break before
-- its body (nil when no empty line follows). `found` keeps the empty lines found last: `from`
-- only grows, so each kind is searched for once over the message.
local function header_block_end(lowered, from, found)
  for kind, line in pairs({ lf = "\n\n", crlf = "\r\n\r\n" }) do
    if found[kind] and found[kind] <= from then
      found[kind] = lowered:find(line, from + 1, true) or false
    end
  end
  local lf, crlf = found.lf, found.crlf
  if lf and (not crlf or lf < crlf) then return lf, lf + 1 end
  if crlf then return crlf + 1, crlf + 3 end
  return #lowered, nil
end

-- The values of header `name` in a lowered header block without NUL bytes (rspamd drops them
-- from values), as rspamd reads them and more: unfolded, without comments, quotes or white
-- space.
local function header_values(block, name, words, state)
  local values, pos = {}, 1
  while true do
    local at = block:find(name, pos, true)
    if not at then return values end
    local colon = block:match("^%s*():", at + #name)
    local line_start = block:sub(at - 1, at - 1)
    if colon and (line_start == "\n" or line_start == "\r") then
      state.headers = state.headers + 1
      if state.headers > max_dash_lines then return values end
      local next_header = block:find("[\r\n][^%s]", colon) or #block + 1
      local value = block:sub(colon + 1, next_header - 1)
      for _, word in ipairs(words) do -- only what can matter
        if value:find(word, 1, true) then
          values[#values + 1] = value:gsub("%b()", ""):gsub('[%s"]', "")
          break
        end
      end
      pos = next_header
    else
      pos = at + #name
    end
  end
end

local function any(values, pattern)
  for _, value in ipairs(values) do
    if value:find(pattern) then return true end
  end
  return false
end

-- Whether the pkcs7-mime body starting at `body` is what rspamd cannot look into: base64 (the
-- CTE says so or none is given) of a ContentInfo of enveloped or authEnvelopedData.
local function encrypted(content, encodings, body)
  for _, value in ipairs(encodings) do
    if not value:find("^base%-?64") then return false end
  end
  local head = content:sub(body, body + 200):gsub("%s", ""):sub(1, 32)
  if #head < 32 or head:find("[^%w+/]") then return false end
  local der = tostring(rspamd_util.decode_base64(head))
  local size = der:byte(2) or 0
  local at = size > 0x80 and 3 + size - 0x80 or 3
  if der:byte(1) ~= 0x30 then return false end
  for _, oid in ipairs(enveloped_oids) do
    if der:sub(at, at + #oid - 1) == oid then return true end
  end
  return false
end

-- Why one header block (from the line break `from` on) and what it encloses hide parts, or
-- nil; and where the blocks read end.
local function hidden_parts(content, lowered, from, state)
  while true do
    local last, body = header_block_end(lowered, from, state)
    local block = (from == 0 and "\n" .. lowered:sub(1, last) or lowered:sub(from, last))
      :gsub("%z", "")
    local types = header_values(block, "content-type", { "message", "pkcs7-mime" }, state)
    local encodings = #types > 0
      and header_values(block, "content-transfer-encoding", { "" }, state)
    if state.headers > max_dash_lines then
      return string.format("over %d Content-Type and -Transfer-Encoding headers",
        max_dash_lines), last
    end
    local message = any(types, "^message")
    if message and (any(encodings, "base%-?64") or any(encodings, "quoted%-printable")
        or any(encodings, "uu")) then
      return "an encoded message/* part", last
    end
    if any(types, "pkcs7%-mime") and not (body and encrypted(content, encodings, body + 1)) then
      return "an S/MIME part other than encrypted", last
    end
    if not message or not body then return nil, last end
    from = body
  end
end

local function decoded_parts(content, lowered, starts)
  starts[#starts + 1] = 0 -- the message's own header block
  table.sort(starts)
  local covered, state = -1, { lf = 0, crlf = 0, headers = 0 }
  for _, at in ipairs(starts) do
    if at > covered then
      local why
      why, covered = hidden_parts(content, lowered, at, state)
      if why then return why end
    end
  end
  return nil
end

-- Why the message is too complex, or nil. Linear in its size, and stops at the first limit.
-- rspamd takes every line that starts with "--" and something (after a LF, or a CR: a bare CR
-- ends a line for it too) as a boundary candidate, and parses as parts those whose rest is a
-- boundary of the message in any case: declared, also as RFC 2231 boundary*0=, or guessed when
-- none is. So the parts are counted by the lines' shape, not against the declarations: "--"
-- and a character that is no white space is a part line (boundaries and closings, but also
-- "---" rules or "--option"); "--" and white space ("-- " before a signature, "-- comment" in
-- SQL: a boundary may begin with a space, but none of real mail does) counts only as a line
-- starting with "--", whose limit is higher.
local function too_complex(content)
  local lowered = content:lower()
  local declared, pos = 0, 1
  while true do
    local at = lowered:find("boundary", pos, true)
    if not at then break end
    if content:match('^%s*=%s*"?([^"%s;]+)', at + 8) then
      declared = declared + 1
      if declared > max_boundaries then
        return string.format("over %d multipart boundaries", max_boundaries)
      end
    end
    pos = at + 8
  end
  local parts, lines, starts = 0, 0, {}
  for _, line_start in ipairs({ "\n--", "\r--" }) do
    pos = 1
    while true do
      local at = content:find(line_start, pos, true)
      if not at then break end
      local first = content:sub(at + 3, at + 3)
      if first ~= "" and first ~= "\r" and first ~= "\n" then
        lines = lines + 1
        starts[lines] = at
        if lines > max_dash_lines then
          return string.format("over %d lines starting with --", max_dash_lines)
        end
        if not first:find("^%s") then
          parts = parts + 1
          if parts > max_parts then
            return string.format("over %d MIME parts", max_parts)
          end
        end
      end
      pos = at + 3
    end
  end
  return decoded_parts(content, lowered, starts)
end

-- The agent's health probe (its envelope sender, from the pod's own 127.0.0.1, which no outside
-- client can claim). It proves that a proxy process takes a message and answers through its
-- event loop; it is not scanned, so that slow DNS does not take the pod out of service, nor
-- logged, which would add a line every few seconds.
local function is_health_probe(task)
  local ip = task:get_from_ip()
  local from = task:get_from("smtp")
  return ip and ip:is_valid() and ip:to_string() == "127.0.0.1" and from and from[1]
    and from[1].addr == "probe@localhost"
end

rspamd_config:register_symbol({
  name = "MAILSTACK_TOO_COMPLEX",
  type = "connfilter",
  priority = 10,
  flags = "empty,nostat",
  callback = function(task)
    if is_health_probe(task) then
      task:set_flag("no_log")
      task:set_pre_result{action = "no action", message = "health probe", module = "mailstack"}
      task:set_flag("skip")
      return
    end
    local why = too_complex(tostring(task:get_content()))
    if not why then return end
    rspamd_logger.warnx(task, "message not scanned: %s", why)
    if accept then
      task:set_milter_reply({
        add_headers = {["X-Spam-Status"] = "unscanned, too complex (" .. why .. ")"},
        remove_headers = {["X-Spam-Status"] = 0},
      })
      task:set_pre_result{action = "no action", message = "not scanned: " .. why,
        module = "mailstack"}
    else
      task:set_pre_result{action = "soft reject",
        message = "Message too complex to scan (" .. why .. ")", module = "mailstack"}
    end
    -- Nothing else runs: no parsing, no filters (the idempotent stage still logs the task).
    task:set_flag("skip")
  end,
})

-- Our own domains are not for strangers (docs/operator.md, "Our domains on port 25"). A client
-- that neither logged in (587, 465, and Sieve's pseudo login on mda-submit) nor connects from
-- the pod itself (mynetworks: bounces, notices, the health probe) may use an envelope sender of
-- ours only from an address the SPF record we publish authorises. rspamd's SPF module evaluates
-- exactly that record (mx, include:, ip4:/ip6:, whatever it lists) against the client address;
-- force_actions.conf refuses on its answer. The null sender (bounces) names no domain.
-- A shared server's domains come and go without a new config: the users Secret lists them,
-- read again within 10 s of a change (as the forwarding map below).
local own_domains, own_domains_seen = {}, nil
local own_domains_path = "/etc/mailstack/forwarding/virtual_domains"

local function load_own_domains()
  local err, st = require("rspamd_util").stat(own_domains_path)
  local seen = (not err and st) and string.format("%s:%s", st.mtime, st.size) or "missing"
  if seen == own_domains_seen then
    return
  end
  local found = {}
  local file = io.open(own_domains_path, "r")
  if file then
    for line in file:lines() do
      local domain = line:match("^([^#%s]%S*)")
      if domain then
        found[domain:lower()] = true
      end
    end
    file:close()
  end
  own_domains, own_domains_seen = found, seen
end

load_own_domains()
rspamd_config:add_on_load(function(_, ev_base)
  rspamd_config:add_periodic(ev_base, 10.0, function()
    load_own_domains()
    return true
  end, false)
end)

local function from_stranger(task)
  if task:get_user() then
    return false
  end
  local ip = task:get_from_ip()
  return not (ip and ip:is_valid() and ip:is_local())
end

local function own_envelope_domain(task)
  local from = task:get_from("smtp")
  local domain = from and from[1] and from[1].domain
  if domain and own_domains[domain:lower()] then
    return domain:lower()
  end
  return nil
end

local spf_verdicts = {
  R_SPF_FAIL = "fail", R_SPF_SOFTFAIL = "softfail", R_SPF_NEUTRAL = "neutral",
  R_SPF_PERMFAIL = "permerror", R_SPF_NA = "none",
}

local own_sender_id = rspamd_config:register_symbol({
  name = "MAILSTACK_OWN_SENDER_CHECK",
  type = "callback",
  flags = "empty,nostat",
  score = 0.0,
  group = "policies",
  callback = function(task)
    if not from_stranger(task) then
      return
    end
    local domain = own_envelope_domain(task)
    if not domain then
      return
    end
    if task:has_symbol("R_SPF_ALLOW") then
      return
    end
    for symbol, verdict in pairs(spf_verdicts) do
      if task:has_symbol(symbol) then
        task:insert_result("MAILSTACK_OWN_SENDER_NOT_IN_SPF", 1.0, domain .. ":" .. verdict)
        return
      end
    end
    -- A DNS failure (R_SPF_DNSFAIL) or no answer in time: the client may try again later.
    task:insert_result("MAILSTACK_OWN_SENDER_SPF_TEMPFAIL", 1.0, domain)
  end,
})
for _, name in ipairs({ "MAILSTACK_OWN_SENDER_NOT_IN_SPF", "MAILSTACK_OWN_SENDER_SPF_TEMPFAIL" }) do
  rspamd_config:register_symbol({
    name = name, type = "virtual", parent = own_sender_id, score = 0.0, group = "policies",
  })
end
rspamd_config:register_dependency("MAILSTACK_OWN_SENDER_CHECK", "SPF_CHECK")

-- MAILSTACK_OWN_FROM_DMARC_FAIL: From: names one of our domains, and the message fails its
-- DMARC (whatever policy we publish: with p=none it is still not ours).
local dmarc_failures = { "DMARC_POLICY_REJECT", "DMARC_POLICY_QUARANTINE", "DMARC_POLICY_SOFTFAIL" }

rspamd_config:register_symbol({
  name = "MAILSTACK_OWN_FROM_DMARC_FAIL",
  type = "callback",
  flags = "empty,nostat",
  score = 0.0,
  group = "policies",
  callback = function(task)
    local from = task:get_from("mime")
    local domain = from and from[1] and from[1].domain
    if not (domain and own_domains[domain:lower()]) then
      return false
    end
    for _, symbol in ipairs(dmarc_failures) do
      if task:has_symbol(symbol) then
        return true, symbol
      end
    end
    return false
  end,
})
rspamd_config:register_dependency("MAILSTACK_OWN_FROM_DMARC_FAIL", "DMARC_CHECK")

-- The forwarding guard (render/forwarding.py): mail from strangers that is marked as spam or
-- fails our DMARC does not leave through forwardTo or an alias to another server. The map says
-- per envelope recipient (before Postfix's alias expansion) where it leads: "refuse" (only
-- outside: the message is refused), or the held addresses of the mailboxes that keep a copy
-- (the recipient is replaced by them: delivered here only, to Junk).
-- The map is read here, not as an rspamd map: rspamd polls its maps every map_watch_interval
-- (5 min, for every map: the stock remote ones too), and a forwardTo added by a user should be
-- guarded at once. Each worker checks the file every 10 s and reads it again when it changed.
local rspamd_util = require "rspamd_util"
local forwarding_path = "/etc/mailstack/forwarding/forwarding"
local forwarding, forwarding_seen = {}, nil

local function load_forwarding()
  local err, st = rspamd_util.stat(forwarding_path)
  local seen = (not err and st) and string.format("%s:%s", st.mtime, st.size) or "missing"
  if seen == forwarding_seen then
    return
  end
  local entries = {}
  local file = io.open(forwarding_path, "r")
  if file then
    for line in file:lines() do
      local key, value = line:match("^([^#%s]%S*)%s+(%S+)")
      if key then
        entries[key:lower()] = value
      end
    end
    file:close()
  end
  forwarding, forwarding_seen = entries, seen
end

load_forwarding()
rspamd_config:add_on_load(function(_, ev_base)
  rspamd_config:add_periodic(ev_base, 10.0, function()
    load_forwarding()
    return true
  end, false)
end)

local function forwarding_of(address)
  local found = forwarding[address]
  if found then
    return found
  end
  local user, domain = address:match("^([^@]*)@(.+)$")
  if not user then
    return nil
  end
  -- As Postfix looks up an address with a detail: user+detail@, then user@, then the catch-all.
  local base = user:match("^([^+]*)%+")
  if base and forwarding[base .. "@" .. domain] then
    return forwarding[base .. "@" .. domain]
  end
  return forwarding["@" .. domain]
end

local marked_actions = { ["add header"] = true, ["rewrite subject"] = true }

rspamd_config:register_symbol({
  name = "MAILSTACK_FORWARD_GUARD",
  type = "postfilter",
  flags = "empty,nostat",
  callback = function(task)
    if not from_stranger(task) then
      return
    end
    local why
    if task:has_symbol("MAILSTACK_OWN_FROM_DMARC_FAIL") then
      why = "it fails the DMARC policy of its From: domain"
    elseif marked_actions[task:get_metric_action()] then
      why = "it is marked as spam"
    else
      return
    end
    local refused, deleted, added = {}, {}, {}
    for _, rcpt in ipairs(task:get_recipients("smtp") or {}) do
      local address = (rcpt.addr or ""):lower()
      local verdict = forwarding_of(address)
      if verdict == "refuse" then
        table.insert(refused, address)
      elseif verdict and verdict ~= "local" then
        table.insert(deleted, rcpt.addr)
        for held in verdict:gmatch("[^,]+") do
          table.insert(added, held)
        end
      end
    end
    if #refused > 0 then
      rspamd_logger.infox(task, "not forwarding to %s: %s", table.concat(refused, ","), why)
      task:set_pre_result{action = "reject", module = "mailstack", priority = 10,
        message = "Not accepted: " .. refused[1] .. " forwards mail to another server, and " ..
          "this message is not forwarded because " .. why}
      return
    end
    if #deleted > 0 then
      rspamd_logger.infox(task, "delivering here only, not forwarding (%s): %s -> %s", why,
        table.concat(deleted, ","), table.concat(added, ","))
      task:set_milter_reply({ del_rcpt = deleted, add_rcpt = added })
    end
  end,
})
