# Attribute-based access: the principal's department must own the resource and its clearance
# must reach the resource's sensitivity; the requested scopes must be scopes of the resource.
package caracal.authz

import rego.v1

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "attributes_do_not_match"}],
}

same_department if {
	input.principal.attributes.department == input.resource.attributes.department
}

cleared if {
	input.principal.attributes.clearance >= input.resource.attributes.sensitivity
}

scopes_of_resource if {
	count(input.context.requested_scopes) > 0
	every scope in input.context.requested_scopes {
		scope in input.resource.scopes
	}
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "attribute-based"}],
	"diagnostics": [],
} if {
	same_department
	cleared
	scopes_of_resource
}
