"""On PostgreSQL, make the signals table partitioned by day of ``captured_at``.

Retention then drops whole day partitions (constant cost whatever the table
size) instead of deleting rows. A DEFAULT partition takes rows outside the
partitions created so far (backfills); ``signals_partitions_ensure`` adds the
next days' partitions every day. Other databases keep the plain table.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE signals_app_signal RENAME TO signals_app_signal_plain;
CREATE TABLE signals_app_signal (LIKE signals_app_signal_plain INCLUDING DEFAULTS INCLUDING IDENTITY)
    PARTITION BY RANGE (captured_at);
ALTER TABLE signals_app_signal ADD PRIMARY KEY (id, captured_at);
CREATE TABLE signals_app_signal_default PARTITION OF signals_app_signal DEFAULT;
INSERT INTO signals_app_signal SELECT * FROM signals_app_signal_plain;
DROP TABLE signals_app_signal_plain;
CREATE INDEX signal_loader_captured ON signals_app_signal (loader_id, captured_at);
CREATE INDEX signal_status_captured ON signals_app_signal (validation_status, captured_at);
CREATE INDEX signal_captured ON signals_app_signal (captured_at);
CREATE INDEX signal_correlation ON signals_app_signal (correlation_id) WHERE NOT (correlation_id = '');
CREATE INDEX signals_app_signal_run_id ON signals_app_signal (run_id);
ALTER TABLE signals_app_signal ADD CONSTRAINT signals_app_signal_loader_fk
    FOREIGN KEY (loader_id) REFERENCES loaders_loader (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE signals_app_signal ADD CONSTRAINT signals_app_signal_run_fk
    FOREIGN KEY (run_id) REFERENCES signals_app_run (id) DEFERRABLE INITIALLY DEFERRED;
"""


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FORWARD)
    from signals_app.retention import signals_partitions_ensure

    signals_partitions_ensure(days_before=2)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("signals_app", "0001_initial")]

    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
