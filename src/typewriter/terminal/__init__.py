"""``typewriter chat`` in a terminal: the prompt, the slash commands, the live answer.

The modules each do one job: ``prompt`` reads a line (editing and history),
``commands`` tells a question from a slash command, ``render`` shows an answer
as it types (Markdown on a terminal, plain text otherwise), ``session`` runs the
conversation over the Python client, and ``connect`` holds what every terminal
command shares (the gateway's URL and key, one-line errors).
"""
