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
