-- Argo CD health check for flomastr.io/Tenant. Install it in the argocd-cm ConfigMap under
-- `resource.customizations.health.flomastr.io_Tenant` (README: "GitOps health").
--
-- It reads the kstatus conditions the operator writes (Ready, Reconciling, Stalled), each
-- carrying the generation it describes: a condition about an older generation of the spec says
-- nothing about the current one. Written for Lua 5.1, the dialect Argo CD runs (gopher-lua).
local hs = {}

local function current(condition, generation)
  return condition.observedGeneration == nil or generation == nil
    or condition.observedGeneration == generation
end

local function find(status, kind, generation)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == kind and current(condition, generation) then
      return condition
    end
  end
  return nil
end

local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return condition.reason or fallback
end

local generation = obj.metadata.generation
local status = obj.status

if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the flomastr operator to report the tenant's status"
  return hs
end

if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the flomastr operator to reconcile generation " .. tostring(generation)
  return hs
end

local stalled = find(status, "Stalled", generation)
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. describe(stalled, "a failure needs fixing")
  return hs
end

if obj.spec ~= nil and obj.spec.suspended == true then
  hs.status = "Suspended"
  hs.message = "The tenant is suspended (spec.suspended)"
  return hs
end

local ready = find(status, "Ready", generation)
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

local reconciling = find(status, "Reconciling", generation)
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling, "Reconciling")
else
  hs.message = describe(ready, "Waiting for the tenant to become ready")
end
return hs
