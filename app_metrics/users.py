"""The users' domain: registrations, phone verification (and its refusals), sessions and
registered users; the same conventions as ``domain.py``."""

from __future__ import annotations

from typing import Literal

from .domain import Reader, _closed, _Domain
from .factory import MetricFactory
from .labels import Family
from .scrape import ScrapeTimeValues, SourceOptions

VERIFICATION_STATUSES = ("sent", "verified", "failed", "expired")
# what refused a verification request: the user's wrong answers, or codes sent per phone
# number, per user or per API client within their windows
VERIFICATION_LIMITS = ("attempts", "phone", "user", "client")

VerificationStatus = Literal["sent", "verified", "failed", "expired"]
VerificationLimit = Literal["attempts", "phone", "user", "client"]


class UserMetrics(_Domain):
    def __init__(
        self, factory: MetricFactory, values: ScrapeTimeValues, options: SourceOptions
    ) -> None:
        super().__init__(values, options)
        self.registrations: Family = factory.counter(
            "user_registrations_total", "Users registered."
        )
        self.verifications: Family = factory.counter(
            "phone_verifications_total",
            "Phone verification steps: code sent, verified, failed or expired.",
            ("status",),
        )
        self.refusals: Family = factory.counter(
            "phone_verification_refusals_total",
            "Phone verification requests refused by a limit: the user's wrong answers "
            "(attempts), or codes sent per phone, per user or per API client.",
            ("limit",),
        )
        values.gauge("active_sessions", "Sessions that have not expired.")
        values.gauge("registered_users", "Users in the database.")
        self.registrations.labels()
        for status in VERIFICATION_STATUSES:
            self.verifications.labels(status)
        for limit in VERIFICATION_LIMITS:
            self.refusals.labels(limit)

    def registered(self) -> None:
        self.registrations.labels().inc()

    def phone_verification(self, status: VerificationStatus) -> None:
        self.verifications.labels(_closed(status, VERIFICATION_STATUSES)).inc()

    def phone_verification_refused(self, limit: VerificationLimit) -> None:
        """A code not sent, or an answer not compared, because ``limit`` was reached."""
        self.refusals.labels(_closed(limit, VERIFICATION_LIMITS)).inc()

    def active_sessions_from(self, reader: Reader) -> None:
        """``reader()`` returns the number of sessions that have not expired."""
        self._from("active_sessions", ["active_sessions"], reader)

    def registered_users_from(self, reader: Reader) -> None:
        """``reader()`` returns the number of users in the database."""
        self._from("registered_users", ["registered_users"], reader)
