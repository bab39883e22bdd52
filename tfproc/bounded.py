"""Running a function over items in a few threads, in order, a bounded number ahead of the consumer."""
import collections
import concurrent.futures


def ordered_map(function, items, workers, ahead):
    """Yield ``(item, function(item))`` in the order of ``items``, with at most ``ahead`` calls
    started beyond the one being consumed, so memory stays bounded however slow the consumer is.
    ``function`` should return its failures rather than raise them."""
    items = list(items)
    if len(items) <= 1:
        for item in items:
            yield item, function(item)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) > ahead:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
