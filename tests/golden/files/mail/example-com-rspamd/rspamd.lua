-- Symbols of this stack that multimap cannot express; force_actions.conf acts on them.

-- MAILSTACK_FROM_ADDRESS_IN_NAME: the From: header shows an address other than its own: in the
-- display name or a comment, quoted or not, in any case, inside angle brackets or not, and
-- after encoded words (=?utf-8?b?...?=) are decoded. A mail client shows the display name as
-- the author, so "bob@example.com" <alice@example.com> would read as Bob's. The address
-- itself repeated as the display name ("alice@example.com" <alice@example.com>) is no second
-- address and passes. Looks like an address: something@name.tld without spaces; the
-- full-width and small at signs (U+FF20, U+FE6B) count as @.
local rspamd_regexp = require "rspamd_regexp"

local address_like = rspamd_regexp.create_cached(
  '/[^\\s<>()\\[\\]",;:@]+@[^\\s<>()\\[\\]",;:@.]+(?:\\.[^\\s<>()\\[\\]",;:@.]+)+/')

local function other_addresses(text, own)
  text = text:gsub('\239\188\160', '@'):gsub('\239\185\171', '@'):lower()
  local found = address_like:search(text, true)
  if not found then
    return nil
  end
  for _, address in ipairs(found) do
    if address ~= own then
      return address
    end
  end
  return nil
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
    -- Decoded and unfolded, and as it came (a client may decode what rspamd leaves).
    for _, text in ipairs({ task:get_header('From') or '', task:get_header_raw('From') or '' }) do
      local other = other_addresses(text, own)
      if other then
        return true, other
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

local max_parts = 1000 -- boundary lines (one per part, plus closings)
local max_boundaries = 100 -- boundary declarations (nested multiparts)
local max_dash_lines = 100000 -- lines starting with "--" (boundary candidates)
-- spec.spam.onScanFailure: tempfail. Refused with 451: the sender retries, then bounces it.
local accept = false

-- Why the message is too complex, or nil. Linear in its size, and stops at the first limit.
local function too_complex(content)
  local lowered = content:lower()
  local boundaries, declared, pos = {}, 0, 1
  while true do
    local at = lowered:find("boundary", pos, true)
    if not at then break end
    local value = content:match('^%s*=%s*"?([^"%s;]+)', at + 8)
    if value then
      declared = declared + 1
      if declared > max_boundaries then
        return string.format("over %d multipart boundaries", max_boundaries)
      end
      boundaries[value] = true
    end
    pos = at + 8
  end
  local parts, lines = 0, 0
  pos = 1
  while true do
    local at = content:find("\n--", pos, true)
    if not at then return nil end
    lines = lines + 1
    if lines > max_dash_lines then
      return string.format("over %d lines starting with --", max_dash_lines)
    end
    local token = content:match("^%S+", at + 3)
    if token and token:sub(-2) == "--" then token = token:sub(1, -3) end  -- a closing one
    if token and boundaries[token] then
      parts = parts + 1
      if parts > max_parts then
        return string.format("over %d MIME parts", max_parts)
      end
    end
    pos = at + 3
  end
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
