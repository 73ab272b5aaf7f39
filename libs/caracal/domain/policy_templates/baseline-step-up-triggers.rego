# Baseline: sensitive scopes need a satisfied step-up (human approval or MFA); without one the
# decision is deny and names the step-up that would allow it.
package caracal.authz

import rego.v1

sensitive_scopes := {"admin", "payments:write", "secrets:read"}

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "no_scopes_requested"}],
}

needs_step_up if {
	some scope in input.context.requested_scopes
	scope in sensitive_scopes
}

stepped_up if input.context.step_up.satisfied == true

result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-step-up-triggers"}],
	"diagnostics": [{"step_up_required": {"type": "human_approval"}}],
} if {
	needs_step_up
	not stepped_up
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-step-up-triggers"}],
	"diagnostics": [],
} if {
	count(input.context.requested_scopes) > 0
	not needs_step_up
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-step-up-triggers"}],
	"diagnostics": [],
} if {
	needs_step_up
	stepped_up
}
