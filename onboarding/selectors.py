"""The checklist read from live state: each step's condition, who may do it and the screen to do it on.

Nothing here trusts a click. A step is done when the database (or a setting) says so, on every
render: delete the only team and "Create a team" is open again. Demo data never counts — loaders
tagged ``DEMO_TAG``, with their tokens, runs and signals, and anything written by a
``DEMO_USER_PREFIX`` user — and neither do the rows the migrations seed (the STATS-* loaders and
their team, the stock channels, the built-in protection rule): they were there before anyone began.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils.http import urlencode

from etl_monitor.bootstrap import DEMO_TAG, DEMO_USER_PREFIX
from etl_monitor.models import FieldProtection
from etl_monitor.roles import Role
from integrations.models import Channel, DeliveryStatus
from loaders.models import Loader, LoaderVersion, Team, VersionState
from onboarding.models import ChecklistDismissal, LoaderPageVisit, Step, StepRecord
from operations.views import loader_snippets
from signals_app.models import IngestToken, Run, Signal

# Who sees the checklist: the roles that build the setup (Editor, Admin). Asked as a permission,
# like every check in the product, so a site granting it to one person shows it to that person.
SEE_PERMISSION = "loaders.add_loader"
SKIP_PERMISSION = "onboarding.skip_step"

# Each step: who can do it (the roles holding the permission that does it; tests compare them
# with etl_monitor.roles) and what makes it done, in the words the checklist shows.
STEP_ROLES: dict[Step, tuple[str, ...]] = {
    Step.TEAM: (Role.EDITOR, Role.ADMIN),
    Step.LOADER: (Role.EDITOR, Role.APPROVER, Role.ADMIN),
    Step.TOKEN: (Role.EDITOR, Role.ADMIN),
    Step.FIRST_RUN: (Role.EDITOR, Role.ADMIN),
    Step.CHANNEL: (Role.ADMIN,),
    Step.PROTECTION: (Role.ADMIN,),
    Step.DASHBOARDS: (Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN),
}
STEP_PERMISSIONS: dict[Step, tuple[str, ...]] = {
    Step.TEAM: ("loaders.add_team",),
    Step.LOADER: ("loaders.add_loader", "loaders.approve_loaderversion"),
    Step.TOKEN: ("signals_app.add_ingesttoken",),
    Step.FIRST_RUN: ("signals_app.add_run",),
    Step.CHANNEL: ("integrations.change_channel",),
    Step.PROTECTION: ("etl_monitor.add_fieldprotection",),
    Step.DASHBOARDS: ("loaders.view_loader",),
}
DONE_WHEN: dict[Step, str] = {
    Step.TEAM: "Done when a team exists.",
    Step.LOADER: "Done when a loader's version was approved by a second person (it became active).",
    Step.TOKEN: "Done when a loader has an ingest token or a ping key that is not revoked.",
    Step.FIRST_RUN: "Done when a run or a signal arrived for a loader.",
    Step.CHANNEL: "Done when an enabled notification channel sent a test or a notification successfully.",
    Step.PROTECTION: "Done when a field protection rule of your own exists, or an Admin skipped this step.",
    Step.DASHBOARDS: "Done when GRAFANA_URL is configured or someone opened a loader's page.",
}


@dataclass
class StepState:
    step: Step
    number: int
    done: bool
    status: str  # where this installation stands, one sentence
    link_url: str = ""
    link_text: str = ""
    snippets: list[tuple[str, str]] = field(default_factory=list)
    skippable: bool = False
    skipped_at: Any = None
    skipped_by: Any = None
    skipped_only: bool = False  # done because skipped, not because a rule exists

    @property
    def state_word(self) -> str:
        if not self.done:
            return "To do"
        return "Skipped" if self.skipped_only else "Done"

    @property
    def title(self) -> str:
        return self.step.label

    @property
    def roles(self) -> tuple[str, ...]:
        return STEP_ROLES[self.step]

    @property
    def done_when(self) -> str:
        return DONE_WHEN[self.step]


@dataclass
class Checklist:
    steps: list[StepState]

    @property
    def done_count(self) -> int:
        return sum(1 for s in self.steps if s.done)

    @property
    def total(self) -> int:
        return len(self.steps)

    @property
    def all_done(self) -> bool:
        return self.done_count == self.total

    @property
    def next_number(self) -> int | None:
        return next((s.number for s in self.steps if not s.done), None)

    @property
    def done_steps(self) -> set[Step]:
        return {s.step for s in self.steps if s.done}


def _at_loader(step: Step, done: bool, status: str, loader_code: str, **more: Any) -> StepState:
    """A step whose link opens a loader's page."""
    return StepState(
        step, 0, done, status, reverse("operations:loader", args=[loader_code]), f"Open {loader_code}'s page", **more
    )


def _not_demo_user(prefix: str) -> Q:
    return ~Q(**{f"{prefix}username__startswith": DEMO_USER_PREFIX})


def own_teams() -> QuerySet[Team]:
    """Teams a person (not the demo, not a migration) created: the creation record of the
    team's history names a user outside the demo."""
    created = Team.history.model.objects.filter(id=OuterRef("pk"), history_type="+", history_user__isnull=False).filter(
        _not_demo_user("history_user__")
    )
    return Team.objects.filter(Exists(created))


def own_loaders() -> QuerySet[Loader]:
    """Loaders a person created, leaving out the demo (its tag or its users) and the seeded
    STATS-* loaders (written by a migration: no creator)."""
    demo_tagged = Loader.tags.through.objects.filter(loader_id=OuterRef("pk"), tag__name=DEMO_TAG)
    return (
        Loader.objects.filter(created_by__isnull=False)
        .filter(_not_demo_user("created_by__"))
        .exclude(Exists(demo_tagged))
    )


def _approved_versions(loaders: QuerySet[Loader]) -> QuerySet[LoaderVersion]:
    # Four-eyes is enforced by loaders.services; "decided_by" is the second person.
    return LoaderVersion.objects.filter(
        loader__in=loaders,
        state__in=[VersionState.ACTIVE, VersionState.SUPERSEDED],
        decided_by__isnull=False,
    ).filter(_not_demo_user("decided_by__"))


def focus_loader() -> Loader | None:
    """The loader the checklist talks about: the first one approved, else the newest draft."""
    return (
        own_loaders()
        .select_related("owner")
        .order_by(F("first_activated_at").asc(nulls_last=True), "-created_at")
        .first()
    )


def _tested_channels() -> QuerySet[Channel]:
    """Enabled channels that delivered something: a test (the channel page's button) or a
    notification. A success stamps ``last_success_at``; a SENT delivery says the same."""
    sent = Q(last_success_at__isnull=False) | Q(deliveries__status=DeliveryStatus.SENT)
    return Channel.objects.filter(enabled=True).filter(sent).distinct()


def checklist_read(*, base_url: str) -> Checklist:
    """Every step's state now (about a dozen small queries). ``base_url`` goes into the snippets."""
    loaders = own_loaders()
    loader = focus_loader()
    records = {r.step: r for r in StepRecord.objects.select_related("skipped_by")}
    steps = [
        _team_step(),
        _loader_step(loader),
        _token_step(loader, loaders, base_url),
        _first_run_step(loader, loaders, base_url),
        _channel_step(),
        _protection_step(records.get(Step.PROTECTION)),
        _dashboards_step(loader),
    ]
    for number, state in enumerate(steps, start=1):
        state.number = number
    return Checklist(steps=steps)


def _team_step() -> StepState:
    team = own_teams().order_by("created_at").first()
    if team is not None:
        return StepState(
            Step.TEAM,
            0,
            True,
            f"Team {team.name} exists.",
            reverse("admin:loaders_team_changelist"),
            "See the teams",
        )
    return StepState(
        Step.TEAM, 0, False, "No team yet: loaders belong to a team.", reverse("admin:loaders_team_add"), "Add a team"
    )


def _version_url(version: LoaderVersion) -> str:
    return reverse("admin:loaders_loaderversion_change", args=[version.pk])


def _loader_step(loader: Loader | None) -> StepState:
    if loader is None:
        return StepState(
            Step.LOADER,
            0,
            False,
            "No loader yet. An Editor creates it and submits it; another person, an Approver, approves it.",
            reverse("admin:loaders_loader_add"),
            "Add a loader",
        )
    approved = _approved_versions(own_loaders()).select_related("decided_by", "loader").order_by("decided_at").first()
    if approved is not None:
        return StepState(
            Step.LOADER,
            0,
            True,
            f"{approved.loader.loader_code} v{approved.number} was approved by {approved.decided_by}.",
            reverse("admin:loaders_loader_change", args=[approved.loader.pk]),
            f"Open {approved.loader.loader_code}",
        )
    version = loader.edit_basis
    code = loader.loader_code
    if version is None:  # a loader always has a version; say so plainly if one was deleted by hand
        return StepState(
            Step.LOADER,
            0,
            False,
            f"{code} has no version.",
            reverse("admin:loaders_loader_change", args=[loader.pk]),
            f"Open {code}",
        )
    if version.state == VersionState.PENDING_APPROVAL:
        status = f"{code} v{version.number} waits for an Approver — someone other than who wrote it."
        text = f"Review {code} v{version.number}"
    elif version.state == VersionState.REJECTED:
        status = f"{code} v{version.number} was rejected: {version.decision_comment or 'no reason given'}."
        text = f"Open {code} v{version.number}"
    else:
        status = f"{code} v{version.number} is a draft: fill in its contract and submit it for approval."
        text = f"Submit {code} v{version.number}"
    return StepState(Step.LOADER, 0, False, status, _version_url(version), text)


def _token_step(loader: Loader | None, loaders: QuerySet[Loader], base_url: str) -> StepState:
    token = (
        IngestToken.objects.filter(loader__in=loaders, revoked_at__isnull=True)
        .select_related("loader")
        .order_by("created_at")
        .first()
    )
    if token is not None:
        return _at_loader(
            Step.TOKEN,
            True,
            f"{token.loader.loader_code} has the {'ping key' if token.kind == IngestToken.Kind.PING else 'API token'} "
            f"{token.prefix}… ({token.name}).",
            token.loader.loader_code,
            snippets=loader_snippets(base_url, token.loader.loader_code),
        )
    if loader is None:
        return StepState(Step.TOKEN, 0, False, "Create a loader first.")
    add = reverse("admin:signals_app_ingesttoken_add") + "?" + urlencode({"loader": loader.pk})
    return StepState(
        Step.TOKEN,
        0,
        False,
        f"{loader.loader_code} has no token yet. Create an API token (for the API and the Python client) "
        "or a ping key (for curl): its secret is shown once, on the next screen.",
        add,
        f"Create a token for {loader.loader_code}",
        snippets=loader_snippets(base_url, loader.loader_code),
    )


def _first_run_step(loader: Loader | None, loaders: QuerySet[Loader], base_url: str) -> StepState:
    # Asked per loader (an index probe on runs and signals each), never as a scan of those tables.
    with_run = loaders.filter(Exists(Run.objects.filter(loader=OuterRef("pk")))).order_by("created_at").first()
    if with_run is not None:
        return _at_loader(
            Step.FIRST_RUN,
            True,
            f"A first run of {with_run.loader_code} arrived.",
            with_run.loader_code,
        )
    with_signal = loaders.filter(Exists(Signal.objects.filter(loader=OuterRef("pk")))).order_by("created_at").first()
    if with_signal is not None:
        return _at_loader(
            Step.FIRST_RUN,
            True,
            f"A first signal of {with_signal.loader_code} arrived.",
            with_signal.loader_code,
        )
    if loader is None:
        return StepState(Step.FIRST_RUN, 0, False, "Create a loader first.")
    return _at_loader(
        Step.FIRST_RUN,
        False,
        f"Nothing arrived for {loader.loader_code} yet. Add one of these lines to its job, with the "
        "token or ping key of step 3 in place of $ETL_MONITOR_TOKEN or $PING_KEY.",
        loader.loader_code,
        snippets=loader_snippets(base_url, loader.loader_code),
    )


def _channel_step() -> StepState:
    channel = _tested_channels().first()
    if channel is not None:
        return StepState(
            Step.CHANNEL,
            0,
            True,
            f"The channel {channel} sent a message successfully.",
            reverse("admin:integrations_channel_change", args=[channel.pk]),
            f"Open {channel}",
        )
    return StepState(
        Step.CHANNEL,
        0,
        False,
        "No channel has sent anything yet. Open a channel (email, Slack, a webhook), fill in what it needs and "
        "save it; then press “Send a test notification” on its page, or select it in the list and run that action.",
        reverse("admin:integrations_channel_changelist"),
        "Open the channels",
    )


def _protection_step(record: StepRecord | None) -> StepState:
    skipped = record is not None and record.skipped_at is not None
    rule = FieldProtection.objects.filter(is_builtin=False).order_by("model_label", "field_name").first()
    state = StepState(Step.PROTECTION, 0, rule is not None or skipped, "", skippable=True)
    if skipped:
        state.skipped_at, state.skipped_by = record.skipped_at, record.skipped_by
    if rule is not None:
        state.status = f"{rule.model_label}.{rule.field_name} is protected ({rule.get_level_display().split(' —')[0]})."
        state.link_url, state.link_text = reverse("admin:etl_monitor_fieldprotection_changelist"), "See the rules"
    elif skipped:
        state.skipped_only = True
        state.status = "Skipped: no field needs protecting here."
        state.link_url, state.link_text = reverse("admin:etl_monitor_fieldprotection_changelist"), "See the rules"
    else:
        state.status = (
            "Decide whether some roles must not see or change a field (a connection host, an owner…). "
            "Add a rule, or skip this step if nothing needs protecting."
        )
        state.link_url, state.link_text = reverse("admin:etl_monitor_fieldprotection_add"), "Add a protection rule"
    return state


def _dashboards_step(loader: Loader | None) -> StepState:
    if settings.GRAFANA_URL:
        return StepState(Step.DASHBOARDS, 0, True, "GRAFANA_URL is configured.", settings.GRAFANA_URL, "Open Grafana")
    visit = LoaderPageVisit.objects.select_related("user").order_by("visited_at").first()
    if visit is not None:
        return _at_loader(
            Step.DASHBOARDS,
            True,
            f"{visit.user} opened the page of {visit.loader_code}.",
            visit.loader_code,
        )
    if loader is None:
        return StepState(
            Step.DASHBOARDS,
            0,
            False,
            "Open a loader's page (its health, runs and charts), or configure GRAFANA_URL.",
            reverse("admin:loaders_loader_changelist"),
            "Open the loaders",
        )
    return _at_loader(
        Step.DASHBOARDS,
        False,
        f"Open {loader.loader_code}'s page: its health, runs, incidents and charts. "
        "Or configure GRAFANA_URL to link the Grafana dashboards.",
        loader.loader_code,
    )


def checklist_visible(user: AbstractBaseUser) -> bool:
    """Shown to those who build the setup (Editors and Admins), unless they hid it."""
    if not (user.is_authenticated and user.is_active and user.has_perm(SEE_PERMISSION)):
        return False
    return not ChecklistDismissal.objects.filter(user=user).exists()


def checklist_hidden_by(user: AbstractBaseUser) -> bool:
    return bool(user.is_authenticated) and ChecklistDismissal.objects.filter(user=user).exists()


def step_records() -> dict[Step, StepRecord]:
    return {Step(r.step): r for r in StepRecord.objects.all()}
