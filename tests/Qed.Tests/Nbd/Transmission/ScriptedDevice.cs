using Qed.IO;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// Passes every call to the device it wraps, except that it can fail every call (<see cref="Failure"/>), hold every call
/// until released (<see cref="Gate"/>), and claim other capabilities; it counts calls.
/// </summary>
internal sealed class ScriptedDevice(BlockDevice inner) : BlockDevice
{
    private int _zeroCalls;
    private int _started;
    private int _flushes;

    public Exception? Failure { get; set; }

    /// <summary>When set, each call waits for it before running (async calls await it, sync calls block).</summary>
    public SemaphoreSlim? Gate { get; set; }

    private readonly BlockDeviceCapabilities? _capabilities;

    /// <summary>What the device claims it can do (the wrapped device's capabilities unless set).</summary>
    public BlockDeviceCapabilities ClaimedCapabilities { init => _capabilities = value; }

    public override BlockDeviceCapabilities Capabilities => _capabilities ?? inner.Capabilities;

    public int ZeroCalls => Volatile.Read(ref _zeroCalls);

    /// <summary>The unmap permission of the last write-zeroes call.</summary>
    public bool LastMayUnmap { get; private set; }

    public int Flushes => Volatile.Read(ref _flushes);

    /// <summary>Calls that reached the device (before the gate).</summary>
    public int Started => Volatile.Read(ref _started);

    public override long Size => inner.Size;

    public override bool IsReadOnly => inner.IsReadOnly;

    public override string FormatName => inner.FormatName;

    public override string FileName => inner.FileName;

    public override BlockDevice? Backing => inner.Backing;

    protected internal override async ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        await EnterAsync(useAsync);
        await inner.ReadCoreAsync(destination, offset, useAsync, cancellationToken);
    }

    protected internal override async ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        await EnterAsync(useAsync);
        await inner.WriteCoreAsync(source, offset, useAsync, cancellationToken);
    }

    protected internal override async ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _zeroCalls);
        LastMayUnmap = mayUnmap;
        await EnterAsync(useAsync);
        await inner.WriteZeroesCoreAsync(offset, length, mayUnmap, useAsync, cancellationToken);
    }

    protected internal override async ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _flushes);
        await EnterAsync(useAsync);
        await inner.FlushCoreAsync(useAsync, cancellationToken);
    }

    protected internal override async ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        await EnterAsync(useAsync);
        return await inner.GetStatusCoreAsync(offset, length, useAsync, cancellationToken);
    }

    protected internal override ValueTask DiscardCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) =>
        inner.DiscardCoreAsync(offset, length, useAsync, cancellationToken);

    protected override ValueTask CloseCoreAsync(bool useAsync) => ValueTask.CompletedTask;

    private async ValueTask EnterAsync(bool useAsync)
    {
        Interlocked.Increment(ref _started);
        if (Gate is { } gate)
        {
            if (useAsync)
            {
                await gate.WaitAsync();
            }
            else
            {
                gate.Wait();
            }

            gate.Release();
        }

        if (Failure is { } failure)
        {
            throw failure;
        }
    }
}
