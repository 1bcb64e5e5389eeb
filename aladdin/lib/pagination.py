"""A paginator whose page counts its own total: one query a page instead of two."""

from __future__ import annotations

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db.models import Count, QuerySet, Window
from django.db.models.query import ModelIterable


class CountingPaginator(Paginator):
    """Django's paginator, with the total counted by the page's own query.

    ``COUNT(*) OVER ()`` on the page's rows gives the total before LIMIT, so
    a page costs one query instead of a COUNT and then the rows: on a loaded
    machine each database round trip is a millisecond or more of an API call
    that takes a few. Only a page past the end (no rows to carry the total)
    counts on its own, to tell an empty list from a bad page number. The
    API's lists and the portal's list pages (``get_page``) use it.
    """

    def page(self, number):
        rows = self.object_list
        if not self._counts_itself(rows):
            return super().page(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            return super().page(number)  # its own PageNotAnInteger
        bottom = (number - 1) * self.per_page
        # SQLite reads an OFFSET past 2**63 as a float and fails ("datatype
        # mismatch"); no table has that many rows, so such a page is counted
        # and refused as past the end like any other.
        if number < 1 or bottom >= 2**62:
            return super().page(number)
        page_rows = list(
            rows.annotate(_total_rows=Window(Count("*")))[bottom : bottom + self.per_page]
        )
        if not page_rows:
            return super().page(number)  # counts: an empty first page, or EmptyPage
        # The cached_property's slot: num_pages and the links read it from here.
        self.__dict__["count"] = page_rows[0]._total_rows
        return self._get_page(page_rows, number, self)

    def get_page(self, number):
        """Django's ``get_page`` (a bad number: the first page; past the end: the last).

        Django's own validates the number against the total first, a COUNT
        before the page's query; here the page is asked for first.
        """
        try:
            return self.page(number)
        except PageNotAnInteger:
            return self.page(1)
        except EmptyPage:
            return self.page(self.num_pages)

    @staticmethod
    def _counts_itself(rows) -> bool:
        # Model rows only (a values() row has no attribute to carry the
        # total), and no DISTINCT or set operation: the window counts the
        # rows before those apply, which would not be the page's total.
        return (
            isinstance(rows, QuerySet)
            and rows._iterable_class is ModelIterable
            and not rows.query.combinator
            and not rows.query.is_sliced
            and not rows.query.distinct
        )
