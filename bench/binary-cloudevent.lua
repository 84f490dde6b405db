-- wrk script: POST / with a binary-mode CloudEvent (attributes in ce-* headers, data in the body).
wrk.method = "POST"
wrk.path = "/"
wrk.body = '{"message":"hello"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-id"] = "bench-0001"
wrk.headers["ce-source"] = "/bench/wrk"
wrk.headers["ce-type"] = "dev.kfaas.bench.hello"
