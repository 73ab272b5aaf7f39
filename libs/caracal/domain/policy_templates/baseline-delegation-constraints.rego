# Baseline: delegation chains stay short and only ever narrow: the edge is active, at most
# max_depth hops deep, and its scopes are a subset of its parent's.
package caracal.authz

import rego.v1

max_depth := 3

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "delegation_constraint_failed"}],
}

narrows_parent if {
	not input.delegation_edge.parent_scopes
}

narrows_parent if {
	every scope in input.delegation_edge.scopes {
		scope in input.delegation_edge.parent_scopes
	}
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "baseline-delegation-constraints"}],
	"diagnostics": [],
} if {
	input.delegation_edge.status == "active"
	input.delegation_edge.depth <= max_depth
	narrows_parent
	every scope in input.context.requested_scopes {
		scope in input.delegation_edge.scopes
	}
}
