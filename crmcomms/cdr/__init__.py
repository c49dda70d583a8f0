"""Asterisk's call detail records: read them (CSV or SQL) and turn them into calls.

- :mod:`crmcomms.cdr.rows`: one CDR row as a typed value, parsed at the edge;
- :mod:`crmcomms.cdr.source`: where rows come from (a cdr_custom file, PostgreSQL,
  MySQL/MariaDB), all behind :class:`~crmcomms.cdr.source.CdrSource`;
- :mod:`crmcomms.cdr.backfill`: the pure part, rows of one ``linkedid`` -> one call.
"""
