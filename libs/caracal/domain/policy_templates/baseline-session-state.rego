# Baseline: the caller's session is active and was authenticated at most max_age_seconds ago
# (the age comes with the input: policies cannot read the clock).
package caracal.authz

import rego.v1

max_age_seconds := 3600

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "session_not_usable"}],
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-session-state"}],
	"diagnostics": [],
} if {
	input.context.session.status == "active"
	input.context.session.age_seconds <= max_age_seconds
	count(input.context.requested_scopes) > 0
}
