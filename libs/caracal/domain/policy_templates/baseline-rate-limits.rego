# Baseline: a principal may make at most max_requests in the current window (the count comes
# with the input); scopes marked costly count tenfold.
package caracal.authz

import rego.v1

max_requests := 600

costly_scopes := {"export", "bulk:write"}

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "rate_limit_exceeded"}],
}

weight := 10 if {
	some scope in input.context.requested_scopes
	scope in costly_scopes
} else := 1

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-rate-limits"}],
	"diagnostics": [],
} if {
	count(input.context.requested_scopes) > 0
	input.context.rate.requests_in_window + weight <= max_requests
}
