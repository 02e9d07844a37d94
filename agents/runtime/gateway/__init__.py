"""meshagent in gateway mode (issue 12): the public edge listeners, their route table,
consumer auth (API keys, JWT), rate limits (local and Redis-shared), CORS and metrics.

Everything lives in this package; the rest of the runtime has small hooks only
(config.py reads `gateway:`, agent.py starts it and reports its windows,
proxy_http.py lets a connection choose its exchange class and header reader).
"""
