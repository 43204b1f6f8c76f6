"""Writes to the loader registry. Every path (admin, API, apply_config, import) calls these.

Rules enforced here and nowhere else:
- role permissions (``user.has_perm``) for every write;
- four-eyes: nobody who created, edited or submitted a version may approve it, nor anyone
  who wrote a rejected version it revises (the versions it copies since the last ACTIVE one:
  a trivial edit by someone else does not make rejected work approvable by its author);
- at most one open (DRAFT/PENDING) and one ACTIVE version per loader, under a
  row lock on the loader so concurrent approvals serialise;
- ``loader_code`` is immutable once any version has been ACTIVE;
- every change is saved with its author and reason in history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Max
from django.utils import timezone

from etl_monitor.errors import InvalidInput, PermissionRefused, StateConflict
from etl_monitor.permissions import permission_require
from etl_monitor.protection import policy_for
from loaders.models import OPEN_STATES, Loader, LoaderVersion, Tag, Team, VersionState

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
    instance._change_reason = reason[:100] if reason else None
    instance.save(**kwargs)


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


def _collect(exc: ValidationError, errors: dict[str, list[str]]) -> None:
    for field, messages in exc.message_dict.items():
        key = "non_field_errors" if field == "__all__" else field
        errors.setdefault(key, []).extend(messages)


def _split_input(data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidInput({field: ["Unknown field."] for field in unknown})


def _team_resolve(value: Team | str | None) -> Team:
    if isinstance(value, Team):
        return value
    if not value:
        raise InvalidInput({"owner": ["An owning team is required."]})
    try:
        return Team.objects.get(slug=value)
    except Team.DoesNotExist:
        raise InvalidInput({"owner": [f"Unknown team {value!r}. Create the team first or use an existing slug."]})


def _tags_resolve(names: Iterable[str | Tag], user: AbstractBaseUser) -> list[Tag]:
    tags: list[Tag] = []
    for name in names:
        if isinstance(name, Tag):
            tags.append(name)
            continue
        slug = str(name).strip().lower()
        tag = Tag.objects.filter(name=slug).first()
        if tag is None:
            permission_require(user, "loaders.add_tag", "create tags")
            tag = Tag(name=slug)
            try:
                tag.full_clean()
            except ValidationError:
                raise InvalidInput({"tags": [f"{name!r} is not a valid tag (letters, digits, '-' and '_')."]})
            tag.save()
        tags.append(tag)
    return tags


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


def _version_validate(version: LoaderVersion, errors: dict[str, list[str]]) -> None:
    try:
        version.full_clean(exclude=["loader", "number", "state", "based_on"], validate_unique=False)
    except ValidationError as exc:
        _collect(exc, errors)


# --- loaders -------------------------------------------------------------------


@transaction.atomic
def loader_create(*, user: AbstractBaseUser, data: Mapping[str, Any], reason: str = "Created") -> Loader:
    """Create a loader and its first version as a DRAFT.

    ``data`` holds loader fields (``loader_code``, ``name``, ``owner`` team or slug,
    ``tags`` names, ``is_paused``) and any contract fields of the first version.
    Nothing becomes active: the draft still needs submission and approval.
    """
    permission_require(user, "loaders.add_loader", "create loaders")
    _split_input(data, (*LOADER_FIELDS, *CONTRACT_FIELDS))
    errors: dict[str, list[str]] = {}
    try:
        owner = _team_resolve(data.get("owner"))
    except InvalidInput as exc:
        errors.update(exc.errors)
        owner = None
    loader = Loader(
        loader_code=(data.get("loader_code") or "").strip(),
        name=(data.get("name") or "").strip(),
        owner=owner,
        is_paused=bool(data.get("is_paused", False)),
        created_by=user,
    )
    try:
        loader.full_clean(exclude=["owner"] if owner is None else None)
    except ValidationError as exc:
        _collect(exc, errors)
    version = LoaderVersion(loader=loader, number=1, created_by=user)
    changed_contract = _version_apply(version, data)
    # Protection on create: a value other than the default counts as a write
    # (name and owner are required to exist at all, so they are not checked here).
    policy_for(user, LoaderVersion).check_write(changed_contract)
    policy_for(user, Loader).check_write([f for f in ("tags", "is_paused") if data.get(f) not in (None, False, [], ())])
    _version_validate(version, errors)
    _raise_validation(errors)
    tags = _tags_resolve(data.get("tags") or [], user)
    try:
        with transaction.atomic():
            _save(loader, user=user, reason=reason)
    except IntegrityError:
        raise InvalidInput({"loader_code": [f"A loader with code {loader.loader_code!r} already exists."]})
    loader.tags.set(tags)
    version.loader = loader
    _save(version, user=user, reason=reason)
    return loader


@transaction.atomic
def loader_update(*, user: AbstractBaseUser, loader: Loader, data: Mapping[str, Any], reason: str = "") -> Loader:
    """Change a loader's identity fields (name, owner, tags, paused, code while unlocked)."""
    permission_require(user, "loaders.change_loader", "edit loaders")
    _split_input(data, LOADER_FIELDS)
    loader = Loader.objects.select_for_update().get(pk=loader.pk)
    changed: list[str] = []
    if "loader_code" in data:
        code = (data["loader_code"] or "").strip()
        if code != loader.loader_code:
            if loader.code_locked:
                raise InvalidInput({"loader_code": ["The loader code cannot change once a version has been active."]})
            loader.loader_code = code
            changed.append("loader_code")
    if "name" in data and (data["name"] or "").strip() != loader.name:
        loader.name = (data["name"] or "").strip()
        changed.append("name")
    if "owner" in data:
        owner = _team_resolve(data["owner"])
        if owner.pk != loader.owner_id:
            loader.owner = owner
            changed.append("owner")
    if "is_paused" in data and bool(data["is_paused"]) != loader.is_paused:
        loader.is_paused = bool(data["is_paused"])
        changed.append("is_paused")
    tags = None
    if "tags" in data:
        tags = _tags_resolve(data["tags"] or [], user)
        if {t.pk for t in tags} != set(loader.tags.values_list("pk", flat=True)):
            changed.append("tags")
        else:
            tags = None
    if not changed:
        return loader
    policy_for(user, Loader).check_write(changed)
    errors: dict[str, list[str]] = {}
    try:
        loader.full_clean()
    except ValidationError as exc:
        _collect(exc, errors)
    _raise_validation(errors)
    try:
        with transaction.atomic():
            _save(loader, user=user, reason=reason or f"Changed {', '.join(changed)}")
    except IntegrityError:
        raise InvalidInput({"loader_code": [f"A loader with code {loader.loader_code!r} already exists."]})
    if tags is not None:
        loader.tags.set(tags)
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
            raise StateConflict(
                f"Version {open_version.number} of {loader.loader_code} is pending approval; "
                "withdraw it or wait for the decision before editing."
            )
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
    _split_input(data, CONTRACT_FIELDS)
    version = _version_lock(version)
    loader_version_action_check(user=user, version=version, action=ACTION_EDIT)
    changed = _version_apply(version, data)
    if not changed:
        return version
    policy_for(user, LoaderVersion).check_write(changed)
    errors: dict[str, list[str]] = {}
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
    _split_input(data, (*LOADER_FIELDS, *CONTRACT_FIELDS))
    identity = {k: v for k, v in data.items() if k in LOADER_FIELDS}
    contract = {k: v for k, v in data.items() if k in CONTRACT_FIELDS}
    if identity:
        loader = loader_update(user=user, loader=loader, data=identity, reason=reason)
    if contract:
        current = loader.open_version or loader.active_version
        if current is not None and current.state == VersionState.PENDING_APPROVAL:
            if _contract_differs(current, contract):
                raise StateConflict(
                    f"Version {current.number} of {loader.loader_code} is pending approval; "
                    "withdraw it or wait for the decision before editing."
                )
        elif _contract_differs(current, contract):
            draft = loader_draft_start(user=user, loader=loader, reason=reason)
            loader_version_update(user=user, version=draft, data=contract, reason=reason)
    if hasattr(loader, "current_versions"):
        del loader.current_versions
    return loader


@transaction.atomic
def loader_version_submit(*, user: AbstractBaseUser, version: LoaderVersion, comment: str = "") -> LoaderVersion:
    """DRAFT → PENDING_APPROVAL. From now on the version is frozen until decided or withdrawn."""
    version = _version_lock(version)
    loader_version_action_check(user=user, version=version, action=ACTION_SUBMIT)
    version.submit()
    version.submitted_by = user
    version.submitted_at = timezone.now()
    _save(version, user=user, reason=_reason("Submitted for approval", comment))
    return version


@transaction.atomic
def loader_version_withdraw(*, user: AbstractBaseUser, version: LoaderVersion, comment: str = "") -> LoaderVersion:
    """PENDING_APPROVAL → DRAFT, so the maker can keep editing."""
    version = _version_lock(version)
    loader_version_action_check(user=user, version=version, action=ACTION_WITHDRAW)
    version.withdraw()
    version.submitted_by = None
    version.submitted_at = None
    _save(version, user=user, reason=_reason("Withdrawn from approval", comment))
    return version


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
    _split_input(data, ("name", "email"))
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
