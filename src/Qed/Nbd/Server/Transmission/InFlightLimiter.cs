namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// Counts one connection's requests in flight (from admission to reply written) and the payload bytes they hold. Only
/// the reader admits; it waits while the connection is full, which stops it reading the socket (TCP back-pressure).
/// </summary>
internal sealed class InFlightLimiter
{
    private readonly object _gate = new();
    private readonly int _maxRequests;
    private readonly long _maxBytes;
    private TaskCompletionSource? _spaceWaiter;
    private TaskCompletionSource? _emptyWaiter;
    private long _waitingFor;
    private int _count;
    private long _bytes;

    public InFlightLimiter(int maxRequests, long maxBytes)
    {
        _maxRequests = Math.Max(1, maxRequests);
        _maxBytes = Math.Max(0, maxBytes);
    }

    public int Count => Volatile.Read(ref _count);

    public int PeakCount { get; private set; }

    public long PeakBytes { get; private set; }

    /// <summary>Admits a request holding <paramref name="bytes"/> if it fits; one request is always admitted when nothing else is held.</summary>
    public bool TryAcquire(long bytes)
    {
        lock (_gate)
        {
            return TryAcquireLocked(bytes);
        }
    }

    /// <summary>Waits until a request holding <paramref name="bytes"/> fits, then admits it.</summary>
    public async ValueTask AcquireAsync(long bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (TryAcquireLocked(bytes))
                {
                    return;
                }

                _spaceWaiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waitingFor = bytes;
                wait = _spaceWaiter.Task;
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Ends a request: its slot and bytes are free again.</summary>
    public void Release(long bytes)
    {
        TaskCompletionSource? wake = null;
        TaskCompletionSource? empty = null;
        lock (_gate)
        {
            _count--;
            _bytes -= bytes;
            if (_spaceWaiter is not null && Fits(_waitingFor))
            {
                wake = _spaceWaiter;
                _spaceWaiter = null;
            }

            if (_count == 0 && _emptyWaiter is not null)
            {
                empty = _emptyWaiter;
                _emptyWaiter = null;
            }
        }

        wake?.TrySetResult();
        empty?.TrySetResult();
    }

    /// <summary>Completes when no request is in flight (call after the reader stopped admitting).</summary>
    public Task WhenEmptyAsync()
    {
        lock (_gate)
        {
            if (_count == 0)
            {
                return Task.CompletedTask;
            }

            _emptyWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _emptyWaiter.Task;
        }
    }

    private bool Fits(long bytes) => _count < _maxRequests && (_bytes == 0 || _bytes + bytes <= _maxBytes);

    private bool TryAcquireLocked(long bytes)
    {
        if (!Fits(bytes))
        {
            return false;
        }

        _count++;
        _bytes += bytes;
        PeakCount = Math.Max(PeakCount, _count);
        PeakBytes = Math.Max(PeakBytes, _bytes);
        return true;
    }
}
