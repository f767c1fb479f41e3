using System.Runtime.CompilerServices;

namespace Qed.IO;

/// <summary>
/// The small interface every image layer offers: a size, reads and writes at an offset, write-zeroes, discard, flush,
/// resize and the allocation status of a range. Raw files and QED images both implement it, so convert, backing
/// chains, bench and an NBD server treat them alike.
/// </summary>
/// <remarks>
/// <para>
/// Only this library derives from the class (its constructor is not public); formats are added here, not by callers.
/// The contract between the public methods and a format's <c>...CoreAsync</c> methods:
/// </para>
/// <list type="number">
/// <item>Each operation is implemented once, in a <c>...CoreAsync</c> method taking <c>useAsync</c>: the sync API runs
/// it with <c>useAsync: false</c> and every await in it must then complete synchronously (blocking I/O); the async API
/// runs it with <c>true</c>. One algorithm serves both.</item>
/// <item>The public method has already checked the range (inside the device; not empty for status), that the device
/// is writable for changing operations, and that it is not disposed. Core methods never see a request the checks refuse.</item>
/// <item>There is no position: requests may run concurrently, and core methods must allow that.</item>
/// <item>The cancellation token is checked before the request starts and passed on to the I/O; a canceled request may
/// have done part of its work (as an interrupted write may).</item>
/// <item>Dispose waits for the requests in flight, then calls <see cref="CloseCoreAsync"/> once; requests started
/// after disposal began throw <see cref="ObjectDisposedException"/>. Do not dispose from inside a request; a second
/// Dispose while the first still waits returns at once.</item>
/// </list>
/// Errors: <see cref="ArgumentOutOfRangeException"/> for a range outside the device, <see cref="QedReadOnlyException"/>
/// for a change to a read-only device, <see cref="QedUnsupportedException"/> for an operation the format cannot do,
/// <see cref="QedCorruptionException"/> for invalid metadata met on the way, other <see cref="QedException"/>s and
/// <see cref="IOException"/>s for failed I/O.
/// </remarks>
public abstract class BlockDevice : IDisposable, IAsyncDisposable
{
    /// <summary>Added to <see cref="_requests"/> once disposal began.</summary>
    private const int Closing = 1 << 30;

    private int _disposed;
    /// <summary>Requests in flight, plus <see cref="Closing"/> once disposal began.</summary>
    private int _requests;
    /// <summary>Completes when the last request in flight ends after disposal began; set before <see cref="Closing"/> is.</summary>
    private TaskCompletionSource? _drained;

    /// <summary>Only formats of this library derive from <see cref="BlockDevice"/>.</summary>
    private protected BlockDevice()
    {
    }

    /// <summary>Virtual size in bytes.</summary>
    public abstract long Size { get; }

    /// <summary>True when writes are refused.</summary>
    public abstract bool IsReadOnly { get; }

    /// <summary>Format name as qemu-img spells it (<c>qed</c>, <c>raw</c>).</summary>
    public abstract string FormatName { get; }

    /// <summary>Path of the file behind the device.</summary>
    public abstract string FileName { get; }

    /// <summary>The file that <see cref="BlockStatus.HostOffset"/> values refer to, as qemu-img map names it: <see cref="FileName"/> unless the guest data lives in a file of its own (a qcow2 external data file).</summary>
    internal virtual string HostFileName => FileName;

    /// <summary>The device that unallocated ranges fall through to, if any.</summary>
    public virtual BlockDevice? Backing => null;

    /// <summary>What the device can do beyond reads; without <see cref="BlockDeviceCapabilities.Write"/> every change is refused.</summary>
    public virtual BlockDeviceCapabilities Capabilities => IsReadOnly ? BlockDeviceCapabilities.None : BlockDeviceCapabilities.Write;

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>.</summary>
    public void Read(Memory<byte> destination, long offset)
    {
        CheckRange(offset, destination.Length);
        Complete(ReadRequestAsync(destination, offset, useAsync: false, CancellationToken.None));
    }

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>.</summary>
    public ValueTask ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, destination.Length);
        return ReadRequestAsync(destination, offset, useAsync: true, cancellationToken);
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>.</summary>
    public void Write(ReadOnlyMemory<byte> source, long offset) => Write(source, offset, WriteFlags.None);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>; with <see cref="WriteFlags.ForceUnitAccess"/> it returns once the data is durable.</summary>
    public void Write(ReadOnlyMemory<byte> source, long offset, WriteFlags flags)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        Complete(WriteRequestAsync(source, offset, flags, useAsync: false, CancellationToken.None));
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>.</summary>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, CancellationToken cancellationToken = default) =>
        WriteAsync(source, offset, WriteFlags.None, cancellationToken);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>; with <see cref="WriteFlags.ForceUnitAccess"/> it completes once the data is durable.</summary>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, WriteFlags flags, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        return WriteRequestAsync(source, offset, flags, useAsync: true, cancellationToken);
    }

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros, keeping allocated space allocated.</summary>
    public void WriteZeroes(long offset, long length) => WriteZeroes(offset, length, WriteZeroesFlags.None);

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros; <see cref="WriteZeroesFlags.MayUnmap"/> lets the device free the space.</summary>
    public void WriteZeroes(long offset, long length, WriteZeroesFlags flags)
    {
        CheckWritable();
        CheckRange(offset, length);
        Complete(WriteZeroesRequestAsync(offset, length, flags, useAsync: false, CancellationToken.None));
    }

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros, keeping allocated space allocated.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        WriteZeroesAsync(offset, length, WriteZeroesFlags.None, cancellationToken);

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros; <see cref="WriteZeroesFlags.MayUnmap"/> lets the device free the space.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return WriteZeroesRequestAsync(offset, length, flags, useAsync: true, cancellationToken);
    }

    /// <summary>
    /// Tells the device that <paramref name="length"/> bytes at <paramref name="offset"/> are no longer needed: it may free
    /// their space, after which they read as zeros; or it may keep them as they are (discard is advisory). It never makes
    /// a range show the data of a backing file again.
    /// </summary>
    public void Discard(long offset, long length)
    {
        CheckWritable();
        CheckRange(offset, length);
        Complete(DiscardRequestAsync(offset, length, useAsync: false, CancellationToken.None));
    }

    /// <inheritdoc cref="Discard"/>
    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return DiscardRequestAsync(offset, length, useAsync: true, cancellationToken);
    }

    /// <summary>Makes every completed write durable.</summary>
    public void Flush() => Complete(FlushRequestAsync(useAsync: false, CancellationToken.None));

    /// <summary>Makes every completed write durable.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => FlushRequestAsync(useAsync: true, cancellationToken);

    /// <summary>
    /// Changes the virtual size to <paramref name="size"/> bytes, durably. New space reads as zeros, or, in an image with a
    /// backing file, as the backing file shows it there (as in QEMU).
    /// </summary>
    /// <exception cref="QedUnsupportedException">The format cannot change its size this way (see <see cref="Capabilities"/>), or not to this size.</exception>
    public void Resize(long size)
    {
        CheckWritable();
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Complete(ResizeRequestAsync(size, useAsync: false, CancellationToken.None));
    }

    /// <inheritdoc cref="Resize"/>
    public ValueTask ResizeAsync(long size, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        return ResizeRequestAsync(size, useAsync: true, cancellationToken);
    }

    /// <summary>Describes the extent that starts at <paramref name="offset"/>, at most <paramref name="length"/> bytes long, as this device alone sees it.</summary>
    public BlockStatus GetStatus(long offset, long length)
    {
        CheckStatusRange(offset, length);
        return GetStatusRequestAsync(offset, length, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Describes the extent that starts at <paramref name="offset"/>, at most <paramref name="length"/> bytes long, as this device alone sees it.</summary>
    public ValueTask<BlockStatus> GetStatusAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckStatusRange(offset, length);
        return GetStatusRequestAsync(offset, length, useAsync: true, cancellationToken);
    }

    /// <summary>Reads; the range is already checked.</summary>
    protected internal abstract ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Writes; the range is already checked and the device is writable. Durability is the caller's (a flush follows for force unit access).</summary>
    protected internal abstract ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Writes zeros, freeing space only when <paramref name="mayUnmap"/>; the range is already checked and the device is writable.</summary>
    protected internal abstract ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Discards; the range is already checked and the device is writable. The default keeps the data (discard is advisory).</summary>
    protected internal virtual ValueTask DiscardCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Flushes.</summary>
    protected internal abstract ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken);

    /// <summary>Resizes, durably; the device is writable and <paramref name="size"/> is not negative. The default refuses.</summary>
    protected internal virtual ValueTask ResizeCoreAsync(long size, bool useAsync, CancellationToken cancellationToken) =>
        throw new QedUnsupportedException($"'{FileName}': resizing a {FormatName} image is not supported");

    /// <summary>Allocation status; the range is already checked and not empty.</summary>
    protected internal abstract ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Closes the device (flushing what the format needs at close); runs once, after every request ended.</summary>
    protected abstract ValueTask CloseCoreAsync(bool useAsync);

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            if (!BeginClose())
            {
                _drained!.Task.GetAwaiter().GetResult();
            }
            CloseCoreAsync(useAsync: false).GetAwaiter().GetResult();
        }
        GC.SuppressFinalize(this);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            if (!BeginClose())
            {
                await _drained!.Task.ConfigureAwait(false);
            }
            await CloseCoreAsync(useAsync: true).ConfigureAwait(false);
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>Disposes the synchronous or the asynchronous way: a format closes the layer below it in its own close's mode.</summary>
    internal ValueTask DisposeAsync(bool useAsync)
    {
        if (useAsync)
        {
            return DisposeAsync();
        }
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Refuses new requests; returns true when none is in flight, else <see cref="_drained"/> completes when the last ends.</summary>
    private bool BeginClose()
    {
        _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return Interlocked.Add(ref _requests, Closing) == Closing;
    }

    /// <summary>Counts a request in flight; throws once disposal began. Pair with <see cref="ExitRequest"/>.</summary>
    internal void EnterRequest()
    {
        if ((Interlocked.Increment(ref _requests) & Closing) != 0)
        {
            ExitRequest();
            throw new ObjectDisposedException(GetType().Name, $"'{FileName}' is closed");
        }
    }

    /// <summary>Ends a request counted by <see cref="EnterRequest"/>; the last one to end after disposal began lets the close run.</summary>
    internal void ExitRequest()
    {
        if (Interlocked.Decrement(ref _requests) == Closing)
        {
            _drained!.TrySetResult();
        }
    }

    /// <summary>
    /// Runs one request: counted in flight for the drain, refused once canceled, then the core operation with its state
    /// (a static lambda and a value tuple: nothing allocated per request), then a flush when <paramref name="flushAfter"/>
    /// (force unit access).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RequestAsync<TState>(TState state, Func<BlockDevice, TState, bool, CancellationToken, ValueTask> core, bool flushAfter, bool useAsync, CancellationToken cancellationToken)
    {
        EnterRequest();
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            await core(this, state, useAsync, cancellationToken).ConfigureAwait(false);
            if (flushAfter)
            {
                await FlushCoreAsync(useAsync, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            ExitRequest();
        }
    }

    private ValueTask ReadRequestAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
        RequestAsync((destination, offset), static (d, s, a, c) => d.ReadCoreAsync(s.destination, s.offset, a, c), flushAfter: false, useAsync, cancellationToken);

    private ValueTask WriteRequestAsync(ReadOnlyMemory<byte> source, long offset, WriteFlags flags, bool useAsync, CancellationToken cancellationToken) =>
        RequestAsync((source, offset), static (d, s, a, c) => d.WriteCoreAsync(s.source, s.offset, a, c), (flags & WriteFlags.ForceUnitAccess) != 0, useAsync, cancellationToken);

    private ValueTask WriteZeroesRequestAsync(long offset, long length, WriteZeroesFlags flags, bool useAsync, CancellationToken cancellationToken) =>
        RequestAsync((offset, length, mayUnmap: (flags & WriteZeroesFlags.MayUnmap) != 0), static (d, s, a, c) => d.WriteZeroesCoreAsync(s.offset, s.length, s.mayUnmap, a, c),
            (flags & WriteZeroesFlags.ForceUnitAccess) != 0, useAsync, cancellationToken);

    private ValueTask DiscardRequestAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) =>
        RequestAsync((offset, length), static (d, s, a, c) => d.DiscardCoreAsync(s.offset, s.length, a, c), flushAfter: false, useAsync, cancellationToken);

    private ValueTask FlushRequestAsync(bool useAsync, CancellationToken cancellationToken) =>
        RequestAsync(0, static (d, _, a, c) => d.FlushCoreAsync(a, c), flushAfter: false, useAsync, cancellationToken);

    private ValueTask ResizeRequestAsync(long size, bool useAsync, CancellationToken cancellationToken) =>
        RequestAsync(size, static (d, s, a, c) => d.ResizeCoreAsync(s, a, c), flushAfter: false, useAsync, cancellationToken);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<BlockStatus> GetStatusRequestAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        EnterRequest();
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            return await GetStatusCoreAsync(offset, length, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ExitRequest();
        }
    }

    /// <summary>Finishes a request run with <c>useAsync: false</c>, which completes synchronously.</summary>
    private static void Complete(ValueTask request) => request.GetAwaiter().GetResult();

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"The request of {length} bytes at offset {offset} lies outside the {Size}-byte device.");
        }
    }

    private void CheckStatusRange(long offset, long length)
    {
        if (length <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "The length must be positive.");
        }
        CheckRange(offset, length);
    }

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new QedReadOnlyException($"'{FileName}' is open read-only");
        }
    }
}
