from tests.integrations.test_jira import *  # noqa
from tests.integrations.test_jira import jira, fire, committed  # noqa

def test_dbg(jira, fire, active_loader, new_loader, editor, approver):
    other = new_loader("INVOICES-DAILY")
    loader_version_approve(user=approver, version=loader_version_submit(user=editor, version=other.open_version))
    add_signals(other, failed=3, ok=1, at=timezone.now())
    jira.fail_next(1, 429, retry_after=30, method="POST", path=CREATE)
    fire(timezone.now())
    for d in Delivery.objects.order_by("pk"):
        print(d.pk, d.incident_id, d.channel.name, d.purpose, d.status, d.attempts, d.last_error[:80], d.next_attempt_at)
    print([ (r.method, r.path, r.status) for r in jira.requests])
    assert 0
