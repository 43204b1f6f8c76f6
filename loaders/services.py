"""Writes to the loader registry. Every path (admin, API, apply_config, import) calls these.

Rules enforced here and nowhere else:
- one way to create loaders: ``loaders_create_many`` (the import's rows; ``loader_create``
  is its one-row case) checks with the model's own validation, protection on create and the
  tags a role may create, then writes loaders, first versions, tags and history in bulk;
  changes go through ``loader_edit`` (``loader_edit_check`` answers the same without writing);
- role permissions (``user.has_perm``) for every write;
- four-eyes: nobody who created, edited or submitted a version may approve it, nor anyone
  who wrote a rejected version it revises (the versions it copies since the last ACTIVE one:
  a trivial edit by someone else does not make rejected work approvable by its author);
- at most one open (DRAFT/PENDING) and one ACTIVE version per loader, under a
  row lock on the loader so concurrent approvals serialise;
- ``loader_code`` is immutable once any version has been ACTIVE;
- a version is submitted only when its contract differs from the ACTIVE one (no empty changes);
- every change is saved with its author and reason in history, and every submission and
  decision is announced (``loader_version_transitioned``) once committed.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Max
from django.dispatch import Signal
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError, StateConflict, fields_known
from etl_monitor.humanize import count_phrase
from etl_monitor.permissions import permission_require
from etl_monitor.protection import policy_for
from loaders.models import OPEN_STATES, Loader, LoaderVersion, Tag, Team, VersionState
from loaders.selectors import tags_by_name, team_by_slug, teams_by_slug, version_active_differences

# Sent after the commit of every submission, withdrawal, approval and rejection (kwargs: versions,
# a list — an import submits many at once —, action, user). The notifications live in
# integrations, above this app, and connect to it there.
loader_version_transitioned = Signal()

LOADER_FIELDS = ("loader_code", "name", "owner", "tags", "is_paused")
CONTRACT_FIELDS = LoaderVersion.CONTRACT_FIELDS

# Version actions a user may be offered; see loader_version_allowed_actions().
ACTION_EDIT = "edit"
ACTION_SUBMIT = "submit"
ACTION_WITHDRAW = "withdraw"
ACTION_APPROVE = "approve"
ACTION_REJECT = "reject"
VERSION_ACTIONS = (ACTION_EDIT, ACTION_SUBMIT, ACTION_WITHDRAW, ACTION_APPROVE, ACTION_REJECT)

_ACTION_RULES: dict[str, tuple[str, str, VersionState]] = {
    # action: (permission, what the user would be doing, required state)
    ACTION_EDIT: ("loaders.change_loaderversion", "edit loader versions", VersionState.DRAFT),
    ACTION_SUBMIT: ("loaders.submit_loaderversion", "submit versions for approval", VersionState.DRAFT),
    ACTION_WITHDRAW: (
        "loaders.submit_loaderversion",
        "withdraw versions from approval",
        VersionState.PENDING_APPROVAL,
    ),
    ACTION_APPROVE: ("loaders.approve_loaderversion", "approve loader versions", VersionState.PENDING_APPROVAL),
    ACTION_REJECT: ("loaders.approve_loaderversion", "reject loader versions", VersionState.PENDING_APPROVAL),
}


# --- checks --------------------------------------------------------------------


def _version_contributor_ids(version: LoaderVersion) -> set[int]:
    """Everyone who created, edited or submitted this version (from its history while it was open:
    whoever decided a version did not write it)."""
    written = version.history.filter(state__in=OPEN_STATES).exclude(history_user=None)
    ids = set(written.values_list("history_user_id", flat=True))
    ids.update(i for i in (version.created_by_id, version.submitted_by_id) if i is not None)
    return ids


def _versions_revised(version: LoaderVersion) -> list[LoaderVersion]:
    """The rejected versions whose content ``version`` carries, nearest first: its ``based_on``
    chain back to the last version that was approved (or to the first version)."""
    revised: list[LoaderVersion] = []
    seen = {version.pk}
    base_id = version.based_on_id
    while base_id is not None and base_id not in seen:
        base = LoaderVersion.objects.filter(pk=base_id).first()
        if base is None or base.state != VersionState.REJECTED:
            break
        revised.append(base)
        seen.add(base_id)
        base_id = base.based_on_id
    return revised


def _four_eyes_check(user: AbstractBaseUser, version: LoaderVersion) -> None:
    if user.pk == version.submitted_by_id:
        raise PermissionRefused("You submitted this version; another approver must approve it.")
    if user.pk in _version_contributor_ids(version):
        raise PermissionRefused("You created or edited this version; another approver must approve it.")
    for rejected in _versions_revised(version):
        if user.pk in _version_contributor_ids(rejected):
            raise PermissionRefused(
                f"You wrote v{rejected.number}, which this version revises after its rejection; "
                "another approver must approve it."
            )


def loader_version_action_check(*, user: AbstractBaseUser, version: LoaderVersion, action: str) -> None:
    """Raise PermissionRefused / StateConflict if ``user`` may not do ``action`` now."""
    perm, doing, required_state = _ACTION_RULES[action]
    permission_require(user, perm, doing)
    if version.state != required_state:
        raise StateConflict(
            f"Version {version.number} of {version.loader.loader_code} is {version.get_state_display().lower()}; "
            f"only a {VersionState(required_state).label.lower()} version can be {_PAST[action]}."
        )
    if action == ACTION_APPROVE:
        _four_eyes_check(user, version)
    if (
        action == ACTION_WITHDRAW
        and user.pk != version.submitted_by_id
        and not user.has_perm("loaders.withdraw_any_loaderversion")
    ):
        raise PermissionRefused("Only the person who submitted this version (or an admin) can withdraw it.")
    if action == ACTION_REJECT and user.pk == version.submitted_by_id:
        raise PermissionRefused("You submitted this version; withdraw it instead of rejecting it.")


_PAST = {
    ACTION_EDIT: "edited",
    ACTION_SUBMIT: "submitted",
    ACTION_WITHDRAW: "withdrawn",
    ACTION_APPROVE: "approved",
    ACTION_REJECT: "rejected",
}


def loader_version_allowed_actions(*, user: AbstractBaseUser, version: LoaderVersion) -> list[str]:
    """The actions the UI should offer ``user`` on ``version`` (same rules as the services)."""
    allowed = []
    for action in VERSION_ACTIONS:
        try:
            loader_version_action_check(user=user, version=version, action=action)
        except (PermissionRefused, StateConflict):
            continue
        allowed.append(action)
    return allowed


# --- helpers ---------------------------------------------------------------------


def _save(instance: models.Model, *, user: AbstractBaseUser | None, reason: str, **kwargs: Any) -> None:
    instance._history_user = user  # read by simple-history instead of the request
    instance._change_reason = _change_reason(reason)
    instance.save(**kwargs)


def _change_reason(reason: str) -> str | None:
    return reason[:100] if reason else None  # simple-history's column holds 100 characters


def _version_lock(version: LoaderVersion) -> LoaderVersion:
    """Re-read ``version`` under a row lock (only its own row: PostgreSQL refuses outer-join locks)."""
    return (
        LoaderVersion.objects.select_for_update(of=("self",)).select_related("loader", "decided_by").get(pk=version.pk)
    )


def _reason(text: str, comment: str) -> str:
    return f"{text}: {comment}" if comment else text


def _raise_validation(errors: dict[str, list[str]]) -> None:
    if errors:
        raise InvalidInput(errors)


def _collect(exc: ValidationError | InvalidInput, errors: dict[str, list[str]]) -> None:
    messages = exc.errors if isinstance(exc, InvalidInput) else exc.message_dict
    for field, texts in messages.items():
        key = "non_field_errors" if field == "__all__" else field
        errors.setdefault(key, []).extend(texts)


def _protection_check(
    user: AbstractBaseUser, model: type[models.Model], changed: list[str], errors: dict[str, list[str]]
) -> None:
    try:
        policy_for(user, model).check_write(changed)
    except InvalidInput as exc:
        _collect(exc, errors)


def _pending_refusal(loader: Loader, version: LoaderVersion) -> StateConflict:
    return StateConflict(
        f"Version {version.number} of {loader.loader_code} is pending approval; "
        "withdraw it or wait for the decision before editing."
    )


def _team_resolve(value: Team | str | None, teams: Mapping[str, Team] | None = None) -> Team:
    """``value`` as an existing team; ``teams`` (by slug), when given, saves the query."""
    if not value:
        raise InvalidInput({"owner": ["An owning team is required."]})
    team = teams.get(str(value)) if teams is not None and not isinstance(value, Team) else team_by_slug(value)
    if team is None:
        raise InvalidInput({"owner": [f"Unknown team {value!r}. Create the team first or use an existing slug."]})
    return team


def _tag_names(values: Iterable[str | Tag]) -> list[str]:
    """Tag names as stored (trimmed, lower-case), each once, in the order given."""
    names = (value.name if isinstance(value, Tag) else str(value).strip().lower() for value in values)
    return list(dict.fromkeys(names))


@lru_cache(maxsize=4096)
def _tag_name_valid(name: str) -> bool:
    # Tag names repeat across the rows of an import; the model's validation of one is pure.
    try:
        Tag(name=name).clean_fields()
    except ValidationError:
        return False
    return True


def _tags_check(names: list[str], known: Container[str], may_create: bool, errors: dict[str, list[str]]) -> None:
    """Names a new tag may not take, and new tags the role may not create, as errors on ``tags``."""
    new = [name for name in names if name not in known]
    for name in new:
        if not _tag_name_valid(name):
            errors.setdefault("tags", []).append(f"{name!r} is not a valid tag (letters, digits, '-' and '_').")
    if new and not may_create and "tags" not in errors:
        errors["tags"] = [f"Unknown tag(s) {', '.join(new)}; your role cannot create tags."]


def _tags_get_or_create(names: Iterable[str]) -> dict[str, Tag]:
    """The tags named (checked by _tags_check), creating the missing ones: two queries for any number."""
    names = set(names)
    if not names:
        return {}
    Tag.objects.bulk_create([Tag(name=name) for name in names], ignore_conflicts=True)
    return tags_by_name(names)


def _version_apply(version: LoaderVersion, data: Mapping[str, Any]) -> list[str]:
    """Set contract fields on ``version``; return the names that actually changed."""
    changed = []
    for field in CONTRACT_FIELDS:
        if field in data:
            value = data[field]
            if value is None and not LoaderVersion._meta.get_field(field).null:
                value = "" if field != "schedule_timezone" else "UTC"
            if getattr(version, field) != value:
                setattr(version, field, value)
                changed.append(field)
    return changed


# The one check constraint on a version's own fields, evaluated in Python: the database would
# answer it with a query per version, which a large import cannot afford. Same message.
_ROWS_RANGE = next(c for c in LoaderVersion._meta.constraints if c.name == "loaderversion_rows_min_le_max")


# What a version holds besides its contract is set by these services, never taken from input.
_VERSION_NOT_CONTRACT = [f.name for f in LoaderVersion._meta.fields if f.name not in CONTRACT_FIELDS]


def _version_validate(version: LoaderVersion, errors: dict[str, list[str]]) -> None:
    """The model's validation of a version's contract fields, without a query (the unique
    constraints concern states, not the contract; the range constraint is checked below)."""
    try:
        version.full_clean(exclude=_VERSION_NOT_CONTRACT, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        _collect(exc, errors)
    if "expected_rows_min" in errors or "expected_rows_max" in errors:
        return  # as Django does: no constraint on a field already in error
    low, high = version.expected_rows_min, version.expected_rows_max
    if low is not None and high is not None and low > high:
        errors.setdefault("non_field_errors", []).append(_ROWS_RANGE.get_violation_error_message())


def _identity_apply(
    *, user: AbstractBaseUser, loader: Loader, data: Mapping[str, Any], errors: dict[str, list[str]]
) -> tuple[list[str], list[str] | None]:
    """Set ``data``'s identity fields on ``loader`` (not saved) and check them (validation,
    protection, the code lock); return the fields that change and the new tag names (None:
    the tags stay). Problems go to ``errors``."""
    changed: list[str] = []
    if "loader_code" in data:
        code = (data["loader_code"] or "").strip()
        if code != loader.loader_code:
            if loader.code_locked:
                errors["loader_code"] = ["The loader code cannot change once a version has been active."]
            else:
                loader.loader_code = code
                changed.append("loader_code")
    if "name" in data and (data["name"] or "").strip() != loader.name:
        loader.name = (data["name"] or "").strip()
        changed.append("name")
    owner = data.get("owner")
    # The slug of the owner already read (the import's loaders come with theirs) costs no query.
    same_owner = isinstance(owner, str) and Loader.owner.is_cached(loader) and owner == loader.owner.slug
    if "owner" in data and not same_owner:
        try:
            team = _team_resolve(owner)
        except InvalidInput as exc:
            _collect(exc, errors)
        else:
            if team.pk != loader.owner_id:
                loader.owner = team
                changed.append("owner")
    if "is_paused" in data and bool(data["is_paused"]) != loader.is_paused:
        loader.is_paused = bool(data["is_paused"])
        changed.append("is_paused")
    tag_names = None
    if "tags" in data:
        names = _tag_names(data["tags"] or [])
        current = {tag.name for tag in loader.tags.all()}
        if set(names) != current:
            tag_names = names
            changed.append("tags")
            known = tags_by_name(name for name in names if name not in current)
            _tags_check(names, {*current, *known}, user.has_perm("loaders.add_tag"), errors)
    if changed:
        _protection_check(user, Loader, changed, errors)
        try:
            # The owner is a team just read; the code's uniqueness costs a query only when it changes.
            loader.full_clean(exclude=["owner", "created_by", *errors], validate_unique="loader_code" in changed)
        except ValidationError as exc:
            _collect(exc, errors)
    return changed, tag_names


# --- loaders -------------------------------------------------------------------


class RowsRefused(ServiceError):
    """A bulk write refused some of its rows, and wrote none. ``refusals`` maps the index of each
    refused row to what its one-row service would have raised (InvalidInput naming the fields)."""

    code = "invalid"

    def __init__(self, refusals: dict[int, ServiceError]) -> None:
        super().__init__(f"{count_phrase(len(refusals), 'row')} refused; nothing was written.")
        self.refusals = refusals


@dataclass
class _NewLoader:
    loader: Loader
    version: LoaderVersion
    tag_names: list[str]


def _code_taken(code: str) -> InvalidInput:
    return InvalidInput({"loader_code": [f"A loader with code {code!r} already exists."]})


def _loaders_checked(
    *, user: AbstractBaseUser, rows: Sequence[Mapping[str, Any]], submit: bool
) -> Iterator[tuple[int, _NewLoader | ServiceError]]:
    """Each row built as loaders_create_many writes it, and checked: (index, the new loader or
    its refusal). Whatever the number of rows, three queries (teams, tags, codes taken)."""
    permission_require(user, "loaders.add_loader", "create loaders")
    if submit:
        permission_require(user, "loaders.submit_loaderversion", "submit versions for approval")
    teams = teams_by_slug(str(row["owner"]) for row in rows if row.get("owner") and not isinstance(row["owner"], Team))
    known_tags = tags_by_name(name for row in rows for name in _tag_names(row.get("tags") or []))
    may_create_tags = user.has_perm("loaders.add_tag")
    codes = [(row.get("loader_code") or "").strip() for row in rows]
    taken = set(Loader.objects.filter(loader_code__in=codes).values_list("loader_code", flat=True))
    seen: set[str] = set()
    # Each row's loader and version start as copies of these: the models' __init__ with
    # arguments is the costliest step of checking a 10,000-row import, a copy half of it.
    state = VersionState.PENDING_APPROVAL if submit else VersionState.DRAFT
    loader_template = Loader(created_by=user)
    version_template = LoaderVersion(number=1, state=state, created_by=user, submitted_by=user if submit else None)
    for index, (data, code) in enumerate(zip(rows, codes, strict=True)):
        try:
            fields_known(data, (*LOADER_FIELDS, *CONTRACT_FIELDS))
        except InvalidInput as exc:
            yield index, exc
            continue
        errors: dict[str, list[str]] = {}
        try:
            owner = _team_resolve(data.get("owner"), teams)
        except InvalidInput as exc:
            _collect(exc, errors)
            owner = None
        loader = copy.copy(loader_template)
        loader.loader_code, loader.name = code, (data.get("name") or "").strip()
        loader.owner, loader.is_paused = owner, bool(data.get("is_paused", False))
        try:
            loader.full_clean(exclude=["owner", "created_by"], validate_unique=False)  # uniqueness: `taken`
        except ValidationError as exc:
            _collect(exc, errors)
        if code in taken:
            _collect(_code_taken(code), errors)
        elif code and code in seen:
            errors.setdefault("loader_code", []).append(f"The code {code!r} is given more than once.")
        seen.add(code)
        version = copy.copy(version_template)
        # Protection on create: a value other than the default counts as a write (name and
        # owner are required to exist at all, so they are not checked here).
        _protection_check(user, LoaderVersion, _version_apply(version, data), errors)
        written = [f for f in ("tags", "is_paused") if data.get(f) not in (None, False, [], ())]
        _protection_check(user, Loader, written, errors)
        _version_validate(version, errors)
        tag_names = _tag_names(data.get("tags") or [])
        _tags_check(tag_names, known_tags, may_create_tags, errors)
        yield index, (InvalidInput(errors) if errors else _NewLoader(loader, version, tag_names))


def _created_history_tags(links: list[Any]) -> None:
    """The tags of each loader's "created" history row, as a save would have recorded them (bulk
    creation writes the history rows before the tag links exist). ``links``: the new through rows."""
    if not links:
        return
    Through = Loader.history.model._meta.get_field("historicalloader_tags").related_model
    created = dict(
        Loader.history.filter(id__in={link.loader_id for link in links}, history_type="+").values_list(
            "id", "history_id"
        )
    )
    Through.objects.bulk_create(
        [
            Through(id=link.pk, history_id=created[link.loader_id], loader_id=link.loader_id, tag_id=link.tag_id)
            for link in links
        ],
        batch_size=2000,
    )


def _loaders_write(*, user: AbstractBaseUser, prepared: list[_NewLoader], reason: str, submit: bool) -> list[Loader]:
    """Insert checked loaders, their first versions, tag links and all their history rows in bulk
    (a save per row is ~50x slower at 10,000 rows)."""
    now = timezone.now()
    tags = _tags_get_or_create(name for new in prepared for name in new.tag_names)
    try:
        with transaction.atomic():
            loaders = bulk_create_with_history(
                [new.loader for new in prepared],
                Loader,
                batch_size=1000,
                default_user=user,
                default_change_reason=_change_reason(reason),
                default_date=now,
            )
    except IntegrityError:
        # Checked a moment ago: someone created the same code meanwhile.
        codes = [new.loader.loader_code for new in prepared]
        taken = set(Loader.objects.filter(loader_code__in=codes).values_list("loader_code", flat=True))
        if not taken:
            raise
        raise RowsRefused({i: _code_taken(code) for i, code in enumerate(codes) if code in taken})
    by_code = {loader.loader_code: loader for loader in loaders}  # saved, with their ids
    through = Loader.tags.through
    links = through.objects.bulk_create(
        [
            through(loader_id=by_code[new.loader.loader_code].pk, tag_id=tags[name].pk)
            for new in prepared
            for name in new.tag_names
        ],
        batch_size=2000,
    )
    _created_history_tags(links)
    for new in prepared:
        new.version.loader = by_code[new.loader.loader_code]
        new.version.submitted_at = now if submit else None
        new.version.submitted_comment = reason if submit else ""
    bulk_create_with_history(
        [new.version for new in prepared],
        LoaderVersion,
        batch_size=1000,
        default_user=user,
        default_change_reason=_change_reason(reason + (" and submitted for approval" if submit else "")),
        default_date=now,
    )
    if submit:
        _transition_announce(versions=[new.version for new in prepared], action=ACTION_SUBMIT, user=user)
    return loaders


def loaders_create_check(*, user: AbstractBaseUser, rows: Sequence[Mapping[str, Any]], submit: bool = False) -> None:
    """Refuse ``rows`` exactly as loaders_create_many would (RowsRefused), writing nothing: the
    import's preview. The rows are checked one by one and not kept (memory stays flat)."""
    checked = _loaders_checked(user=user, rows=rows, submit=submit)
    refusals = {index: outcome for index, outcome in checked if isinstance(outcome, ServiceError)}
    if refusals:
        raise RowsRefused(refusals)


@transaction.atomic
def loaders_create_many(
    *, user: AbstractBaseUser, rows: Sequence[Mapping[str, Any]], reason: str = "Created", submit: bool = False
) -> list[Loader]:
    """Create loaders, each with its first version as a DRAFT (PENDING_APPROVAL, submitted by
    ``user``, with ``submit``) — all of them or, raising RowsRefused, none.

    Each row holds loader fields (``loader_code``, ``name``, ``owner`` team or slug, ``tags``
    names, ``is_paused``) and any contract fields of the first version, checked as one
    loader_create checks them (model validation, protection on create, tags the role may
    create). Nothing becomes active: the versions still need another person's approval.
    The rows cost a fixed number of queries, not some per row.
    """
    prepared: list[_NewLoader] = []
    refusals: dict[int, ServiceError] = {}
    for index, outcome in _loaders_checked(user=user, rows=rows, submit=submit):
        if isinstance(outcome, ServiceError):
            refusals[index] = outcome
        else:
            prepared.append(outcome)
    if refusals:
        raise RowsRefused(refusals)
    return _loaders_write(user=user, prepared=prepared, reason=reason, submit=submit)


def loader_create(*, user: AbstractBaseUser, data: Mapping[str, Any], reason: str = "Created") -> Loader:
    """Create a loader and its first version as a DRAFT: loaders_create_many of one row."""
    try:
        return loaders_create_many(user=user, rows=[data], reason=reason)[0]
    except RowsRefused as exc:
        raise exc.refusals[0] from None


@transaction.atomic
def loader_update(*, user: AbstractBaseUser, loader: Loader, data: Mapping[str, Any], reason: str = "") -> Loader:
    """Change a loader's identity fields (name, owner, tags, paused, code while unlocked)."""
    permission_require(user, "loaders.change_loader", "edit loaders")
    fields_known(data, LOADER_FIELDS)
    loader = Loader.objects.select_for_update().get(pk=loader.pk)
    errors: dict[str, list[str]] = {}
    changed, tag_names = _identity_apply(user=user, loader=loader, data=data, errors=errors)
    _raise_validation(errors)
    if not changed:
        return loader
    try:
        with transaction.atomic():
            _save(loader, user=user, reason=reason or f"Changed {', '.join(changed)}")
    except IntegrityError:
        raise _code_taken(loader.loader_code)
    if tag_names is not None:
        tags = _tags_get_or_create(tag_names)
        loader.tags.set([tags[name] for name in tag_names])
    return loader


# --- versions ------------------------------------------------------------------


@transaction.atomic
def loader_draft_start(
    *, user: AbstractBaseUser, loader: Loader, base: LoaderVersion | None = None, reason: str = ""
) -> LoaderVersion:
    """Return the loader's DRAFT, starting one from the ACTIVE (or a REJECTED) version if none is open.

    A version pending approval blocks a new draft: it must be approved, rejected
    or withdrawn first, so reviewers never approve something that moves under them.
    """
    permission_require(user, "loaders.change_loaderversion", "edit loader versions")
    loader = Loader.objects.select_for_update().get(pk=loader.pk)
    versions = LoaderVersion.objects.filter(loader=loader)
    open_version = versions.filter(state__in=OPEN_STATES).first()
    if open_version is not None:
        if open_version.state == VersionState.PENDING_APPROVAL:
            raise _pending_refusal(loader, open_version)
        return open_version
    if base is None:
        # After a rejection the maker revises the rejected content; otherwise edit what is live.
        newest = versions.order_by("-number").first()
        if newest is not None and newest.state == VersionState.REJECTED:
            base = newest
        else:
            base = versions.filter(state=VersionState.ACTIVE).first()
    elif base.loader_id != loader.pk or base.state not in (VersionState.ACTIVE, VersionState.REJECTED):
        raise StateConflict("A new draft can only start from this loader's active or a rejected version.")
    number = (versions.aggregate(n=Max("number"))["n"] or 0) + 1
    draft = LoaderVersion(loader=loader, number=number, created_by=user, based_on=base)
    if base is not None:
        for field in CONTRACT_FIELDS:
            setattr(draft, field, getattr(base, field))
    _save(draft, user=user, reason=reason or (f"Draft started from v{base.number}" if base else "Draft started"))
    return draft


@transaction.atomic
def loader_version_update(
    *, user: AbstractBaseUser, version: LoaderVersion, data: Mapping[str, Any], reason: str = ""
) -> LoaderVersion:
    """Change contract fields of a DRAFT. A no-op change writes nothing (keeps config idempotent)."""
    fields_known(data, CONTRACT_FIELDS)
    version = _version_lock(version)
    loader_version_action_check(user=user, version=version, action=ACTION_EDIT)
    changed = _version_apply(version, data)
    if not changed:
        return version
    errors: dict[str, list[str]] = {}
    _protection_check(user, LoaderVersion, changed, errors)
    _version_validate(version, errors)
    _raise_validation(errors)
    _save(version, user=user, reason=reason or f"Changed {', '.join(changed)}")
    return version


def _contract_differs(version: LoaderVersion | None, data: Mapping[str, Any]) -> bool:
    if version is None:
        return bool(data)
    probe = LoaderVersion(**{f: getattr(version, f) for f in CONTRACT_FIELDS})
    return bool(_version_apply(probe, data))


@transaction.atomic
def loader_edit(*, user: AbstractBaseUser, loader: Loader, data: Mapping[str, Any], reason: str = "") -> Loader:
    """One edit of a loader as users think of it: identity fields apply directly,
    contract fields go to the draft (started from the ACTIVE version when needed).

    Contract data equal to what is already there starts no draft, so applying the
    same configuration twice changes nothing.
    """
    fields_known(data, (*LOADER_FIELDS, *CONTRACT_FIELDS))
    identity = {k: v for k, v in data.items() if k in LOADER_FIELDS}
    contract = {k: v for k, v in data.items() if k in CONTRACT_FIELDS}
    if identity:
        loader = loader_update(user=user, loader=loader, data=identity, reason=reason)
    if contract:
        current = loader.open_version or loader.active_version
        if current is not None and current.state == VersionState.PENDING_APPROVAL:
            if _contract_differs(current, contract):
                raise _pending_refusal(loader, current)
        elif _contract_differs(current, contract):
            draft = loader_draft_start(user=user, loader=loader, reason=reason)
            loader_version_update(user=user, version=draft, data=contract, reason=reason)
    if hasattr(loader, "current_versions"):
        del loader.current_versions
    return loader


def loader_edit_check(*, user: AbstractBaseUser, loader: Loader, data: Mapping[str, Any]) -> list[str]:
    """The fields loader_edit would change, or its refusal, writing nothing: the import's preview
    asks this of every row that names an existing loader. Every problem is told at once (a
    pending version alone is loader_edit's StateConflict; with other problems, one more error of
    the InvalidInput). With ``loader`` from selectors.loader_detail_list (owner, tags and
    versions read), a row costs no query unless it changes the owner or the tags."""
    fields_known(data, (*LOADER_FIELDS, *CONTRACT_FIELDS))
    errors: dict[str, list[str]] = {}
    identity = {k: v for k, v in data.items() if k in LOADER_FIELDS}
    changed, _tags = _identity_apply(user=user, loader=copy.copy(loader), data=identity, errors=errors)
    if changed:
        permission_require(user, "loaders.change_loader", "edit loaders")
    contract = {k: v for k, v in data.items() if k in CONTRACT_FIELDS}
    current = loader.open_version or loader.active_version
    if contract and _contract_differs(current, contract):
        pending = current is not None and current.state == VersionState.PENDING_APPROVAL
        if not pending:
            permission_require(user, "loaders.change_loaderversion", "edit loader versions")
        basis = loader.edit_basis
        draft = LoaderVersion(**{f: getattr(basis, f) for f in CONTRACT_FIELDS}) if basis else LoaderVersion()
        contract_changed = _version_apply(draft, contract)
        _protection_check(user, LoaderVersion, contract_changed, errors)
        _version_validate(draft, errors)
        changed += contract_changed
        if pending and not errors:
            raise _pending_refusal(loader, current)
        if pending:  # say all at once: withdrawing the pending version would not be enough
            errors.setdefault("non_field_errors", []).append(_pending_refusal(loader, current).message)
    _raise_validation(errors)
    return changed


def _maker_transition(
    *, user: AbstractBaseUser, version: LoaderVersion, action: str, reason: str, comment: str = ""
) -> LoaderVersion:
    """Submit or withdraw ``version`` under its row lock, recording who submitted it (or no one)."""
    version = _version_lock(version)
    loader_version_action_check(user=user, version=version, action=action)
    if action == ACTION_SUBMIT:
        _change_require(version)
        version.submit()
        version.submitted_by, version.submitted_at, version.submitted_comment = user, timezone.now(), comment
    else:
        version.withdraw()
        version.submitted_by, version.submitted_at, version.submitted_comment = None, None, ""
    _save(version, user=user, reason=reason)
    _transition_announce(versions=[version], action=action, user=user)
    return version


def _change_require(version: LoaderVersion) -> None:
    """Refuse to submit a version whose contract equals the active one: the approver would be
    asked to approve nothing (an edit that was never saved, or undone)."""
    active, differences = version_active_differences(version=version)
    if active is not None and not differences:
        raise StateConflict(
            f"{version.loader.loader_code} v{version.number} has no differences from the active version "
            f"v{active.number}; change its contract (and save it) before submitting it for approval."
        )


def _transition_announce(*, versions: list[LoaderVersion], action: str, user: AbstractBaseUser) -> None:
    """Tell the receivers of loader_version_transitioned, once the transition is committed (a
    rolled-back approval notifies nobody)."""
    transaction.on_commit(
        lambda: loader_version_transitioned.send(sender=LoaderVersion, versions=versions, action=action, user=user)
    )


@transaction.atomic
def loader_version_submit(*, user: AbstractBaseUser, version: LoaderVersion, comment: str = "") -> LoaderVersion:
    """DRAFT → PENDING_APPROVAL. From now on the version is frozen until decided or withdrawn."""
    comment = (comment or "").strip()
    reason = _reason("Submitted for approval", comment)
    return _maker_transition(user=user, version=version, action=ACTION_SUBMIT, reason=reason, comment=comment)


@transaction.atomic
def loader_version_withdraw(*, user: AbstractBaseUser, version: LoaderVersion, comment: str = "") -> LoaderVersion:
    """PENDING_APPROVAL → DRAFT, so the maker can keep editing."""
    reason = _reason("Withdrawn from approval", comment)
    return _maker_transition(user=user, version=version, action=ACTION_WITHDRAW, reason=reason)


@transaction.atomic
def loader_version_approve(*, user: AbstractBaseUser, version: LoaderVersion, comment: str = "") -> LoaderVersion:
    """PENDING_APPROVAL → ACTIVE; the previous ACTIVE version becomes SUPERSEDED.

    The loader row is locked first, so two approvers pressing the button at the
    same moment serialise: the second one finds the version already ACTIVE and
    gets a StateConflict naming who approved it.
    """
    permission_require(user, "loaders.approve_loaderversion", "approve loader versions")
    loader = Loader.objects.select_for_update().get(pk=version.loader_id)
    version = _version_lock(version)
    if version.state == VersionState.ACTIVE and version.decided_by is not None:
        raise StateConflict(
            f"Version {version.number} of {loader.loader_code} was already approved by "
            f"{version.decided_by.get_username()}."
        )
    loader_version_action_check(user=user, version=version, action=ACTION_APPROVE)
    now = timezone.now()
    previous = LoaderVersion.objects.select_for_update().filter(loader=loader, state=VersionState.ACTIVE).first()
    if previous is not None:
        previous.supersede()
        previous.superseded_at = now
        _save(previous, user=user, reason=f"Superseded by v{version.number}")
    version.approve()
    version.decided_by = user
    version.decided_at = now
    version.decision_comment = comment
    _save(version, user=user, reason=_reason("Approved", comment))
    _transition_announce(versions=[version], action=ACTION_APPROVE, user=user)
    if loader.first_activated_at is None:
        loader.first_activated_at = now
        _save(loader, user=user, reason=f"First version approved (v{version.number}); loader code locked")
    return version


@transaction.atomic
def loader_version_reject(*, user: AbstractBaseUser, version: LoaderVersion, reason: str) -> LoaderVersion:
    """PENDING_APPROVAL → REJECTED with a required reason; the maker revises it as a new draft."""
    reason = (reason or "").strip()
    permission_require(user, "loaders.approve_loaderversion", "reject loader versions")
    Loader.objects.select_for_update().get(pk=version.loader_id)
    version = _version_lock(version)
    loader_version_action_check(user=user, version=version, action=ACTION_REJECT)
    if not reason:
        raise InvalidInput({"reason": ["A reason is required to reject a version."]})
    version.reject()
    version.decided_by = user
    version.decided_at = timezone.now()
    version.decision_comment = reason
    _save(version, user=user, reason=f"Rejected: {reason}")
    _transition_announce(versions=[version], action=ACTION_REJECT, user=user)
    return version


def loader_changed_fields(*, loader: Loader, data: Mapping[str, Any]) -> list[str]:
    """Which of ``data``'s fields would change ``loader`` (identity) or its current contract.

    The contract is compared with the open version if there is one, else the
    ACTIVE one: that is what an edit would modify. Used for previews and for
    idempotent configuration.
    """
    changed: list[str] = []
    for field in LOADER_FIELDS:
        if field not in data:
            continue
        value = data[field]
        if field == "owner":
            current: Any = loader.owner.slug
            value = value.slug if isinstance(value, Team) else value
        elif field == "tags":
            current = sorted(t.name for t in loader.tags.all())
            value = sorted(str(t).strip().lower() for t in (value or []))
        elif field == "is_paused":
            current, value = loader.is_paused, bool(value)
        else:
            current, value = getattr(loader, field), (value or "").strip()
        if current != value:
            changed.append(field)
    basis = loader.edit_basis
    if basis is None:
        return changed + [f for f in CONTRACT_FIELDS if f in data]
    probe = LoaderVersion(**{f: getattr(basis, f) for f in CONTRACT_FIELDS})
    return changed + _version_apply(probe, {k: v for k, v in data.items() if k in CONTRACT_FIELDS})


@transaction.atomic
def team_upsert(
    *, user: AbstractBaseUser, slug: str, data: Mapping[str, Any], reason: str = ""
) -> tuple[Team, list[str]]:
    """Create or update a team by slug; returns the team and the fields that changed."""
    fields_known(data, ("name", "email"))
    team = Team.objects.select_for_update().filter(slug=slug).first()
    created = team is None
    if created:
        permission_require(user, "loaders.add_team", "create teams")
        team = Team(slug=slug)
    else:
        permission_require(user, "loaders.change_team", "edit teams")
    changed = [f for f in ("name", "email") if f in data and getattr(team, f) != (data[f] or "")]
    for f in changed:
        setattr(team, f, data[f] or "")
    if created and not team.name:
        team.name = slug
    if not (created or changed):
        return team, []
    errors: dict[str, list[str]] = {}
    try:
        team.full_clean()
    except ValidationError as exc:
        _collect(exc, errors)
    _raise_validation(errors)
    _save(team, user=user, reason=reason or ("Created" if created else f"Changed {', '.join(changed)}"))
    return team, ["created"] if created else changed
