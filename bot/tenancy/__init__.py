"""The HighLevel sub-accounts (locations) this bridge serves: which are connected and how
(`accounts`, `install`, `tokens`), which Slack channels work with each (`routing`, `admin`), and
what happens when one loses its access (`lifecycle`)."""
