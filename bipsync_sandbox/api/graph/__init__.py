"""The sandbox's GraphQL API (``POST {api}/v1/graphql``), built with strawberry.

- :mod:`.paging`: Relay connections over querysets (cursors, ``pageInfo``, ``totalCount``);
- :mod:`.context`: who asks (tenant, principal) and the per-type scope checks;
- :mod:`.schema`: the types and the query root;
- :mod:`.limits`: depth, complexity, time and size limits, and ``extensions.queryAnalysis``;
- :mod:`.view`: the HTTP endpoint behind the REST pipeline (authentication, faults, rate limit).
"""
