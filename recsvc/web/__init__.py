"""The web face of `recsvc serve`: every unary RPC of recsvc.v1 over HTTP (the Connect
protocol's unary calls in JSON or binary, and gRPC-Web) and the operators' dashboard, on
RECSVC_HTTP_PORT. Calls run the very handlers and interceptors the gRPC server runs
(recsvc.web.handlers), so validation, errors, auth, metrics and logs are the same.

Modules: protocol (wire formats, status mapping), context (a grpc.ServicerContext for an
HTTP call), handlers (the servicers' handlers and interceptors), rpc (the ASGI endpoint of the
RPCs), traffic (the server's metrics as rates and percentiles), dashboard_data and dashboard
(the dashboard's JSON and pages), app (routing, CORS), serve (uvicorn in a thread of each
worker process).
"""
