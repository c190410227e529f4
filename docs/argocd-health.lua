-- Argo CD health check for mailstack.dev MailDomain and Mailbox (Lua 5.1, as Argo CD runs it).
--
-- The operator writes status.observedGeneration and a full list of conditions, each with its own
-- observedGeneration. They describe the spec the operator last processed, so they are trusted
-- only when they are about the current metadata.generation; until then the resource is
-- Progressing (the operator has not seen the latest change yet).
--
--   Ready True                          Healthy (Suspended for a suspended Mailbox)
--   Ready Unknown, or no status yet     Progressing
--   Ready False because Valid, Rendered
--     or CertificateReady is False,
--     or a pod is refused (PodRejected) Degraded: the spec, a Secret or the cluster needs a fix
--   Ready False otherwise               Progressing (workloads starting or rolling out)
--   Mailbox Ready False                 Degraded (invalid, no password, no MailDomain)
local hs = {}

local function progressing(message)
  hs.status = "Progressing"
  hs.message = message
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  return progressing("Waiting for the mailstack operator")
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  return progressing("Waiting for the operator to process generation " .. tostring(generation))
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  if condition.type ~= nil then
    conditions[condition.type] = condition
  end
end

local function current(condition)
  return condition ~= nil and (generation == nil or condition.observedGeneration == nil
    or condition.observedGeneration == generation)
end

local ready = conditions["Ready"]
if not current(ready) then
  return progressing("Waiting for the operator to report readiness")
end

local message = ready.message
if message == nil or message == "" then
  message = ready.reason or ""
end

if ready.status == "True" then
  if obj.kind == "Mailbox" and obj.spec ~= nil and obj.spec.suspended == true then
    hs.status = "Suspended"
    hs.message = "Logins are suspended; mail is still accepted"
    return hs
  end
  hs.status = "Healthy"
  hs.message = message
  return hs
end

if ready.status ~= "False" then
  return progressing(message)
end

if obj.kind == "Mailbox" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end

-- WorkloadsReady only when the API server refuses the pods: a person must act (the namespace's
-- Pod Security level, a quota); starting or rolling out settles by itself.
for _, name in ipairs({"Valid", "Rendered", "WorkloadsReady", "CertificateReady"}) do
  local condition = conditions[name]
  if current(condition) and condition.status == "False"
      and (name ~= "WorkloadsReady" or condition.reason == "PodRejected") then
    hs.status = "Degraded"
    hs.message = name .. ": " .. (condition.message or condition.reason or "")
    return hs
  end
end

return progressing(message)
