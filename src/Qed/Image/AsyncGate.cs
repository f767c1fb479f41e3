namespace Qed.Image;

/// <summary>A mutual-exclusion lock that both the sync path (blocking) and the async path (awaiting) can take, so one algorithm serves both.</summary>
internal sealed class AsyncGate : IDisposable
{
    private readonly SemaphoreSlim _semaphore = new(1, 1);

    /// <summary>True while someone holds the gate (for assertions).</summary>
    public bool IsHeld => _semaphore.CurrentCount == 0;

    /// <summary>Takes the gate, blocking the thread when <paramref name="useAsync"/> is false.</summary>
    public ValueTask EnterAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (useAsync)
        {
            return new ValueTask(_semaphore.WaitAsync(cancellationToken));
        }
        _semaphore.Wait(cancellationToken);
        return ValueTask.CompletedTask;
    }

    /// <summary>Releases the gate.</summary>
    public void Exit() => _semaphore.Release();

    /// <inheritdoc />
    public void Dispose() => _semaphore.Dispose();
}
