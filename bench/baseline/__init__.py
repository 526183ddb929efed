"""The baseline: Consentry's stack and queries with the privacy machinery taken out.

Same Litestar + Piccolo + uvicorn, the same contact and organization columns (stored as
plaintext, with an ordinary index on e-mail and phone instead of blind indexes), the same
five endpoints with the same query shapes (including the count behind the list page), and
the same per-request session check (a keyed hash of the cookie looked up in a sessions
table, then the user). What it does *not* do: policy decisions, field encryption, data
keys or audit events. The difference between the two servers is the cost of those.

Run by the benchmark as ``python -m bench.baseline --port P --workers W``.
"""
