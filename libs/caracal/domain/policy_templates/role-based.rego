# Role-based access: each role label of the principal grants a set of scopes; every requested
# scope must be granted by one of the principal's roles. Edit role_scopes to fit the zone.
package caracal.authz

import rego.v1

role_scopes := {
	"viewer": {"read"},
	"editor": {"read", "write"},
	"admin": {"read", "write", "admin"},
}

default result := {
	"decision": "deny",
	"evaluation_status": "complete",
	"determining_policies": [],
	"diagnostics": [{"reason": "no_role_grants_the_requested_scopes"}],
}

granted contains scope if {
	some role in input.principal.labels
	some scope in role_scopes[role]
}

result := {
	"decision": "allow",
	"evaluation_status": "complete",
	"determining_policies": [{"policy": "role-based"}],
	"diagnostics": [],
} if {
	count(input.context.requested_scopes) > 0
	every scope in input.context.requested_scopes {
		scope in granted
	}
}
