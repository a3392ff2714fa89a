"""HTTP routes: users and phone verification, sessions (login/logout), health."""
