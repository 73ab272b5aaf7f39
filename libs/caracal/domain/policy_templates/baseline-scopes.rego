# Baseline: a request names at least one scope, at most max_scopes, all of them scopes the
# resource declares.
package caracal.authz

import rego.v1

max_scopes := 64

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "scopes_not_declared_by_the_resource"}],
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-scopes"}],
	"diagnostics": [],
} if {
	count(input.context.requested_scopes) > 0
	count(input.context.requested_scopes) <= max_scopes
	every scope in input.context.requested_scopes {
		scope in input.resource.scopes
	}
}
