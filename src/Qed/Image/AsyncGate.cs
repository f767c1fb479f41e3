using System.Threading.Tasks.Sources;

namespace Qed.Image;

/// <summary>A mutual-exclusion lock that both the sync path (blocking) and the async path (awaiting) can take, so one algorithm serves both.</summary>
/// <remarks>
/// Why not <see cref="SemaphoreSlim"/>: its contended <c>WaitAsync</c> allocates a task per wait, and at depth 16 every
/// allocating write waits (about 80 bytes a request, most of what a bench allocated). Here a waiter is a reusable
/// <see cref="IValueTaskSource"/> taken from a free list, so a steady state allocates nothing.
/// Waiters are served first come, first served; <see cref="Exit"/> hands the gate straight to the next one (it stays
/// held), and wakes it outside the lock, its continuation on the thread pool, never inline.
/// Cancellation races the hand-over through one compare-and-swap on the waiter's state: whichever wins decides whether
/// the waiter owns the gate or fails with <see cref="OperationCanceledException"/>. A canceled waiter stays queued
/// until an exit skips it, so it is not reused.
/// </remarks>
internal sealed class AsyncGate : IDisposable
{
    private readonly object _sync = new();
    private readonly Queue<Waiter> _waiters = new();
    private Waiter? _free;
    private bool _held;

    /// <summary>True while someone holds the gate (for assertions).</summary>
    public bool IsHeld
    {
        get
        {
            lock (_sync)
            {
                return _held;
            }
        }
    }

    /// <summary>Takes the gate, blocking the thread when <paramref name="useAsync"/> is false.</summary>
    public ValueTask EnterAsync(bool useAsync, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        lock (_sync)
        {
            if (!_held)
            {
                _held = true;
                return ValueTask.CompletedTask;
            }
            waiter = _free ?? new Waiter(this);
            _free = waiter.NextFree;
            waiter.NextFree = null;
            waiter.Prepare(blocking: !useAsync);
            _waiters.Enqueue(waiter);
        }
        waiter.Watch(cancellationToken);
        if (!useAsync)
        {
            waiter.Block();
            return ValueTask.CompletedTask;
        }
        return new ValueTask(waiter, waiter.Version);
    }

    /// <summary>Releases the gate, or hands it to the longest waiter.</summary>
    public void Exit()
    {
        Waiter? next = null;
        lock (_sync)
        {
            while (_waiters.TryDequeue(out var waiter))
            {
                if (waiter.TryGrant())
                {
                    next = waiter;
                    break;
                }
            }
            if (next is null)
            {
                _held = false;
            }
        }
        next?.Wake();
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private void Recycle(Waiter waiter)
    {
        lock (_sync)
        {
            waiter.NextFree = _free;
            _free = waiter;
        }
    }

    /// <summary>One wait: async through <see cref="ManualResetValueTaskSourceCore{TResult}"/>, sync through an event.</summary>
    private sealed class Waiter(AsyncGate gate) : IValueTaskSource
    {
        private const int Waiting = 0;
        private const int Granted = 1;
        private const int Canceled = 2;

        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
        private ManualResetEventSlim? _event;
        private CancellationTokenRegistration _registration;
        private CancellationToken _token;
        private int _state;
        private bool _blocking;

        /// <summary>The next waiter of the gate's free list.</summary>
        public Waiter? NextFree { get; set; }

        public short Version => _core.Version;

        /// <summary>Readies a fresh or recycled waiter; called under the gate's lock.</summary>
        public void Prepare(bool blocking)
        {
            _core.Reset();
            _state = Waiting;
            _blocking = blocking;
            if (blocking)
            {
                (_event ??= new ManualResetEventSlim(false)).Reset();
            }
        }

        public void Watch(CancellationToken cancellationToken)
        {
            _token = cancellationToken;
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static state => ((Waiter)state!).Cancel(), this);
            }
        }

        /// <summary>Claims the gate for this waiter unless it was canceled first; called under the gate's lock.</summary>
        public bool TryGrant() => Interlocked.CompareExchange(ref _state, Granted, Waiting) == Waiting;

        public void Wake() => Signal(error: null);

        /// <summary>Waits for the hand-over (sync path); throws when canceled first.</summary>
        public void Block()
        {
            _event!.Wait();
            Finish();
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public void GetResult(short token)
        {
            _core.GetResult(token);
            Finish();
        }

        private void Cancel()
        {
            if (Interlocked.CompareExchange(ref _state, Canceled, Waiting) == Waiting)
            {
                Signal(new OperationCanceledException(_token));
            }
        }

        private void Signal(Exception? error)
        {
            if (_blocking)
            {
                _event!.Set();
            }
            else if (error is null)
            {
                _core.SetResult(true);
            }
            else
            {
                _core.SetException(error);
            }
        }

        /// <summary>After the wait: drops the cancellation hook, then either recycles the waiter (it owns the gate) or throws.</summary>
        private void Finish()
        {
            _registration.Dispose();
            _registration = default;
            if (Volatile.Read(ref _state) == Canceled)
            {
                throw new OperationCanceledException(_token);
            }
            gate.Recycle(this);
        }
    }
}
