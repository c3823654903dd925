// Package server is the device-management service's HTTP API
// (docs/api.md) over a dms.Service: the routes, the API keys and their
// roles, the error codes, one log line per request.
//
// It sits between the DMS's rules (package dms) and its clients: the
// stations, which fetch work orders and artifacts, activate, lock and
// complete devices and push their journals; administrators and support
// staff, who keep the catalogue and read the records; and a contract
// manufacturer's devices, which claim themselves with an activation token
// alone (POST /v1/claim). "station dms" serves it.
//
// Who may do what is written once, in docs/api.md ("Who may do what"):
// the route table (server.go) gives each call the roles that may make it,
// and scope.go narrows a support key to its product and a station key to
// the work orders assigned to its station. A record outside a key's
// scope answers 404, as one that does not exist; TestAuthorizationMatrix
// walks every call with every kind of caller against the doc's table.
//
// Secrets stay out of everything it writes but the one answer that
// creates them: token and key secrets are never logged, never echoed in an
// error, never part of a read.
package server
