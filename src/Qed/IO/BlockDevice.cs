namespace Qed.IO;

/// <summary>
/// The small interface every image layer offers: a size, reads and writes at an offset, write-zeroes, flush
/// and the allocation status of a range. Raw files and QED images both implement it, so convert, backing
/// chains and later bench and the NBD server treat them alike.
/// </summary>
/// <remarks>
/// Each operation is implemented once, in a <c>...CoreAsync</c> method taking <c>useAsync</c>: the sync API
/// runs it with <c>useAsync: false</c> (every await then completes synchronously), the async API with
/// <c>true</c>. There is no position: concurrent callers never share state through the device.
/// </remarks>
public abstract class BlockDevice : IDisposable, IAsyncDisposable
{
    private int _disposed;

    /// <summary>Virtual size in bytes.</summary>
    public abstract long Size { get; }

    /// <summary>True when writes are refused.</summary>
    public abstract bool IsReadOnly { get; }

    /// <summary>Format name as qemu-img spells it (<c>qed</c>, <c>raw</c>).</summary>
    public abstract string FormatName { get; }

    /// <summary>Path of the file behind the device.</summary>
    public abstract string FileName { get; }

    /// <summary>The device that unallocated ranges fall through to, if any.</summary>
    public virtual BlockDevice? Backing => null;

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>.</summary>
    public void Read(Memory<byte> destination, long offset)
    {
        CheckRange(offset, destination.Length);
        ReadCoreAsync(destination, offset, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>.</summary>
    public ValueTask ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, destination.Length);
        return ReadCoreAsync(destination, offset, useAsync: true, cancellationToken);
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>.</summary>
    public void Write(ReadOnlyMemory<byte> source, long offset)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        WriteCoreAsync(source, offset, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>.</summary>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        return WriteCoreAsync(source, offset, useAsync: true, cancellationToken);
    }

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros, without storing data where the format allows it.</summary>
    public void WriteZeroes(long offset, long length)
    {
        CheckWritable();
        CheckRange(offset, length);
        WriteZeroesCoreAsync(offset, length, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros, without storing data where the format allows it.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return WriteZeroesCoreAsync(offset, length, useAsync: true, cancellationToken);
    }

    /// <summary>Makes every completed write durable.</summary>
    public void Flush() => FlushCoreAsync(useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Makes every completed write durable.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => FlushCoreAsync(useAsync: true, cancellationToken);

    /// <summary>Describes the extent that starts at <paramref name="offset"/>, at most <paramref name="length"/> bytes long, as this device alone sees it.</summary>
    public BlockStatus GetStatus(long offset, long length)
    {
        CheckStatusRange(offset, length);
        return GetStatusCoreAsync(offset, length, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Describes the extent that starts at <paramref name="offset"/>, at most <paramref name="length"/> bytes long, as this device alone sees it.</summary>
    public ValueTask<BlockStatus> GetStatusAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckStatusRange(offset, length);
        return GetStatusCoreAsync(offset, length, useAsync: true, cancellationToken);
    }

    /// <summary>Reads; the range is already checked.</summary>
    protected internal abstract ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Writes; the range is already checked and the device is writable.</summary>
    protected internal abstract ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Writes zeros; the range is already checked and the device is writable.</summary>
    protected internal abstract ValueTask WriteZeroesCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Flushes.</summary>
    protected internal abstract ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken);

    /// <summary>Allocation status; the range is already checked and not empty.</summary>
    protected internal abstract ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken);

    /// <summary>Closes the device (flushing what the format needs at close).</summary>
    protected abstract ValueTask CloseCoreAsync(bool useAsync);

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            CloseCoreAsync(useAsync: false).GetAwaiter().GetResult();
        }
        GC.SuppressFinalize(this);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await CloseCoreAsync(useAsync: true).ConfigureAwait(false);
        }
        GC.SuppressFinalize(this);
    }

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
            throw new QedException($"'{FileName}' is open read-only");
        }
    }
}
