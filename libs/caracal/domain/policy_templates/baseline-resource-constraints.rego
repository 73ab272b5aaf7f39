# Baseline: only HTTPS resources of the principal's own zone, and only the actions listed for
# them, are reachable; the requested scopes must belong to the resource.
package caracal.authz

import rego.v1

allowed_actions := {"read", "write", "invoke"}

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "resource_constraint_failed"}],
}

resource_acceptable if {
	startswith(input.resource.identifier, "https://")
	input.resource.zone_id == input.principal.zone_id
	input.action in allowed_actions
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-resource-constraints"}],
	"diagnostics": [],
} if {
	resource_acceptable
	every scope in input.context.requested_scopes {
		scope in input.resource.scopes
	}
}
