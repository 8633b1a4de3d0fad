"""The page a team starts from: its Bipsync connections with what needs doing first, its syncs
and its research at a glance, and "Connect Bipsync" when nothing is connected yet.

It lives on the product side, not in accounts: it reads connections and syncs, and accounts knows
nothing of either (the data flow is one way). accounts links to it by the URL name
``accounts.teams.TEAM_HOME``.
"""
