-- Argo CD health check for rekey.dev/KeyRotation.
--
-- Install it as the argocd-cm key resource.customizations.health.rekey.dev_KeyRotation
-- (config/argocd/argocd-cm.yaml). It uses only Lua's base and table
-- libraries, which Argo CD opens for every custom health check.
--
--   Progressing  the controller has not seen this generation yet; a run is
--                counting or writing; a finished run's source keys are
--                being verified.
--   Suspended    spec.paused.
--   Degraded     Stalled (a disabled key, a namespace not allowed to use a
--                key, a provider that cannot be reached for too long, ...);
--                a run that ended with failed Secrets; a finished run
--                whose verification found blobs under a source key again,
--                or blobs rewritten since in a form rekey cannot read
--                (SourceKeysDrained False, or Unknown: BlobsNotVerifiable).
--   Healthy      the run succeeded and its verification read no blob of the
--                selected Secrets under a source key (SourceKeysDrained
--                True); a dry run that completed.
local hs = {status = "Progressing", message = "Waiting for the controller"}

local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

local function msg(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local ready = condition("Ready")
local stalled = condition("Stalled")
local drained = condition("SourceKeysDrained")
local phase = obj.status.phase
local progress = obj.status.progress or "0/0"

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = msg(ready, "Paused: " .. progress .. " Secrets done")
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = tostring(stalled.reason) .. ": " .. msg(stalled, "the rotation cannot go on")
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = msg(ready, "The run ended with failed Secrets; see status.failures")
  return hs
end
if phase == "Succeeded" then
  if obj.spec ~= nil and obj.spec.dryRun == true then
    -- A dry run writes nothing: its blobs stay where they were.
    hs.status = "Healthy"
    hs.message = msg(ready, "Dry run complete")
    return hs
  end
  if drained ~= nil and drained.status == "True" then
    hs.status = "Healthy"
    hs.message = msg(ready, "Succeeded") .. "; " .. msg(drained, "no blob is under the source keys")
    return hs
  end
  if drained ~= nil and (drained.status == "False" or drained.reason == "BlobsNotVerifiable") then
    hs.status = "Degraded"
    hs.message = "SourceKeysDrained is " .. tostring(drained.status) .. " (" .. tostring(drained.reason) .. "): " ..
      msg(drained, "blobs may be under the source keys")
    return hs
  end
  -- Not verified yet, or the read failed and is tried again.
  hs.message = "Succeeded; verifying that no blob is left under the source keys"
  if drained ~= nil and drained.reason ~= "VerificationPending" then
    hs.message = hs.message .. ": " .. tostring(drained.reason) .. ": " .. msg(drained, "retrying")
  end
  return hs
end
-- Pending, Running, or a run still starting.
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" and reconciling.reason ~= "Progressing" then
  hs.message = progress .. " Secrets; " .. tostring(reconciling.reason) .. ": " .. msg(reconciling, "waiting")
else
  hs.message = progress .. " Secrets done"
end
return hs
