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
  local parts, lines = 0, 0
  for _, line_start in ipairs({ "\n--", "\r--" }) do
    pos = 1
    while true do
      local at = content:find(line_start, pos, true)
      if not at then break end
      local first = content:sub(at + 3, at + 3)
      if first ~= "" and first ~= "\r" and first ~= "\n" then
        lines = lines + 1
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
  return nil
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
