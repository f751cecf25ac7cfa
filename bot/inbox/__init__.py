"""Working the inbox from Slack: a conversation's state on its thread root and the actions on it.

- `waiting`: ConversationMarks keeps a thread's waiting/unread/star state and its root's
  reactions right (customer messages, answers, ConversationUnreadUpdate webhooks).
- `actions`: ConversationActions carries out the conversation menu (read, unread, star,
  unstar, assign).
- `history`: ConversationHistory posts a conversation's earlier messages into its thread
  ("Earlier messages" on the root), 20 a click, each once.
"""
