# Delegation: an agent acts through a delegation edge; it may only request scopes the edge
# carries, on the edge's resource, and never the lifecycle scope reserved for applications.
package caracal.authz

import rego.v1

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "not_within_delegation"}],
}

within_edge if {
	input.delegation_edge.id != ""
	input.context.agent_session_id != ""
	count(input.context.requested_scopes) > 0
	not "agent:lifecycle" in input.context.requested_scopes
	every scope in input.context.requested_scopes {
		scope in input.delegation_edge.scopes
	}
}

edge_names_resource if {
	not input.delegation_edge.resource_id
}

edge_names_resource if {
	input.delegation_edge.resource_id == input.resource.id
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "delegation"}],
	"diagnostics": [],
} if {
	within_edge
	edge_names_resource
}
