from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """A paginator for tables with millions of rows: counts at most CAP rows.

    `SELECT COUNT(*)` over a whole big table (or a loose filter) is a full scan on PostgreSQL;
    counting a LIMITed subquery stops early. Past CAP rows the admin shows CAP rows' worth of
    pages, which is all anyone pages through; search and filters narrow the rest.
    """

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.CAP].count()
