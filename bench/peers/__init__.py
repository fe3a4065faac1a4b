"""The servers polyhost is compared with, each installed into its own virtual environment."""
