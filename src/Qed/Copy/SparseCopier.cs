using System.Buffers;
using System.Threading.Channels;
using Qed.Extents;
using Qed.IO;

namespace Qed.Copy;

/// <summary>
/// Copies the disk a source device shows (backing chain included) into a target that reads as zeros, writing only data
/// that is not zero, so the target stays sparse. Work grows with the data, not with the size of the disk.
/// </summary>
/// <remarks>
/// 1. A reader walks the source's extent map (<see cref="ExtentMap"/>). Ranges that read as zeros (zero clusters, holes,
///    unallocated ranges of the whole chain) are skipped whole, however long, without reading them.
/// 2. Data extents are read through the source, neighbours together, in pieces of at most <see cref="ChunkSize"/> that
///    never cross an aligned <see cref="ChunkSize"/> boundary, gathered into batches of one <see cref="ChunkSize"/> buffer.
///    The reader runs ahead of the writer through a small bounded queue of batches, so reading the next pieces overlaps
///    writing these.
/// 3. The writer tests the data it received in granules (the target's cluster size, say) aligned to the disk, and writes
///    only the runs of granules holding a non-zero byte; the target reads zeros everywhere else.
/// Failures carry qemu-img's wording and the guest offset: <c>error while reading block status at offset N</c>,
/// <c>error while reading at byte N</c>, <c>error while writing at byte N</c>.
/// </remarks>
public sealed class SparseCopier
{
    /// <summary>The largest read: big enough to be sequential, small enough to keep the queue's memory low.</summary>
    internal const int ChunkSize = 2 * 1024 * 1024;

    // Batches queued ahead of the writer: enough to keep both sides busy; each holds a ChunkSize buffer.
    private const int QueueDepth = 2;
    private const int MinGranule = 512;

    private readonly BlockDevice _source;
    private readonly BlockDevice _target;
    private readonly long _size;
    private readonly int _granule;
    private long _done;

    /// <summary>Creates a copier of the first <paramref name="size"/> bytes of <paramref name="source"/>'s disk; bytes past its end read as zeros.</summary>
    /// <param name="source">The device to copy (its backing chain is read through).</param>
    /// <param name="target">A writable device of at least <paramref name="size"/> bytes that reads as zeros.</param>
    /// <param name="size">The size of the copy.</param>
    /// <param name="granule">Smallest unit tested for zeros and written: a power of two, clamped to 512 ..
    /// <see cref="ChunkSize"/>. The target's cluster size keeps a QED target's clusters whole.</param>
    /// <exception cref="QedReadOnlyException">The target is open read-only.</exception>
    /// <exception cref="ArgumentException">The target is smaller than <paramref name="size"/>, or the granule is not a power of two.</exception>
    public SparseCopier(BlockDevice source, BlockDevice target, long size, int granule = 4096)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (target.IsReadOnly)
        {
            throw new QedReadOnlyException($"'{target.FileName}' is open read-only");
        }
        if (target.Size < size)
        {
            throw new ArgumentException($"'{target.FileName}' has {target.Size} bytes, fewer than the {size} to copy", nameof(target));
        }
        if (granule <= 0 || (granule & (granule - 1)) != 0)
        {
            throw new ArgumentException($"The granule {granule} is not a power of two", nameof(granule));
        }
        _source = source;
        _target = target;
        _size = size;
        _granule = Math.Clamp(granule, MinGranule, ChunkSize);
    }

    /// <summary>Bytes of the disk handled so far (copied or skipped), in order from the start.</summary>
    public long Done => Volatile.Read(ref _done);

    /// <summary>Copies everything, calling <paramref name="progress"/> (done, total) as the copy advances.</summary>
    public void Copy(Action<long, long>? progress = null) =>
        CopyCoreAsync(progress, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Copy"/>
    public Task CopyAsync(Action<long, long>? progress = null, CancellationToken cancellationToken = default) =>
        CopyCoreAsync(progress, useAsync: true, cancellationToken);

    private async Task CopyCoreAsync(Action<long, long>? progress, bool useAsync, CancellationToken cancellationToken)
    {
        var queue = Channel.CreateBounded<Batch>(new BoundedChannelOptions(QueueDepth) { SingleReader = true, SingleWriter = true });
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var reader = Task.Run(() => new BatchReader(this, queue.Writer, useAsync, cancel.Token).RunAsync(), cancel.Token);
        try
        {
            await foreach (var batch in queue.Reader.ReadAllAsync(cancel.Token).ConfigureAwait(false))
            {
                try
                {
                    foreach (var segment in batch.Segments)
                    {
                        await WriteNonZeroAsync(batch.Buffer!.AsMemory(segment.BufferOffset, segment.Length), segment.Offset, useAsync, cancel.Token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    batch.ReturnBuffer();
                }
                Volatile.Write(ref _done, batch.End);
                progress?.Invoke(batch.End, _size);
            }
        }
        catch
        {
            await cancel.CancelAsync().ConfigureAwait(false);
            await DrainAsync(queue.Reader).ConfigureAwait(false);
            try
            {
                await reader.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The writer's failure is the one to report.
            }
            throw;
        }
        // Surfaces a read failure (the queue was completed with it).
        await reader.ConfigureAwait(false);
    }

    private static long NextBoundary(long offset) => (offset / ChunkSize + 1) * ChunkSize;

    /// <summary>Writes the runs of granules of <paramref name="data"/> (which sits at <paramref name="offset"/>) that hold a non-zero byte.</summary>
    private async ValueTask WriteNonZeroAsync(ReadOnlyMemory<byte> data, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        int position = 0;
        while (position < data.Length)
        {
            // Jump to the granule of the next non-zero byte, then gather the run of granules that hold data.
            int nonZero = data.Span[position..].IndexOfAnyExcept((byte)0);
            if (nonZero < 0)
            {
                return;
            }
            int start = Math.Max(position, GranuleStart(data.Length, offset, position + nonZero));
            position = GranuleEnd(data.Length, offset, start);
            while (position < data.Length)
            {
                int end = GranuleEnd(data.Length, offset, position);
                if (data.Span[position..end].IndexOfAnyExcept((byte)0) < 0)
                {
                    break;
                }
                position = end;
            }
            try
            {
                await _target.WriteCoreAsync(data[start..position], offset + start, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new IOException($"error while writing at byte {offset + start}: {e.Message}", e);
            }
        }
    }

    /// <summary>Index in the buffer where the disk-aligned granule holding index <paramref name="index"/> starts (not before the buffer).</summary>
    private int GranuleStart(int length, long offset, int index)
    {
        long granuleStart = (offset + index) & ~(long)(_granule - 1);
        return (int)Math.Clamp(granuleStart - offset, 0, length);
    }

    /// <summary>Index in the buffer just past the disk-aligned granule holding index <paramref name="index"/> (not past the buffer).</summary>
    private int GranuleEnd(int length, long offset, int index)
    {
        long granuleEnd = ((offset + index) | (long)(_granule - 1)) + 1;
        return (int)Math.Min(granuleEnd - offset, length);
    }

    private static async ValueTask DrainAsync(ChannelReader<Batch> queue)
    {
        try
        {
            while (await queue.WaitToReadAsync().ConfigureAwait(false))
            {
                while (queue.TryRead(out var batch))
                {
                    batch.ReturnBuffer();
                }
            }
        }
        catch (Exception)
        {
            // A failed or cancelled reader completes the queue with its error; the buffers are returned either way.
        }
    }

    /// <summary>A piece of data in a batch: <see cref="Length"/> bytes of the disk at <see cref="Offset"/>, at <see cref="BufferOffset"/> in the batch's buffer.</summary>
    private readonly record struct Segment(long Offset, int Length, int BufferOffset);

    /// <summary>
    /// The disk from where the previous batch ended up to <see cref="End"/>: data pieces gathered in one buffer of
    /// <see cref="ChunkSize"/> bytes, everything between them zeros. One queue item carries many small scattered pieces,
    /// so the reader and the writer hand over once per buffer, not once per cluster.
    /// </summary>
    private sealed class Batch(long end)
    {
        public byte[]? Buffer { get; set; }

        public List<Segment> Segments { get; } = [];

        /// <summary>Bytes of <see cref="Buffer"/> in use.</summary>
        public int Used { get; set; }

        public long End { get; set; } = end;

        public void ReturnBuffer()
        {
            if (Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(Buffer);
                Buffer = null;
            }
        }
    }

    /// <summary>Walks the map and queues, in disk order, batches of the data read (zero ranges are only stepped over).</summary>
    private sealed class BatchReader(SparseCopier copier, ChannelWriter<Batch> queue, bool useAsync, CancellationToken cancellationToken)
    {
        /// <summary>The batch being filled; not queued yet, so its buffer is ours to return on failure.</summary>
        private Batch _batch = new(0);

        public async Task RunAsync()
        {
            Exception? failure = null;
            try
            {
                await ReadAllAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                failure = e;
                _batch.ReturnBuffer();
            }
            queue.TryComplete(failure);
        }

        private async ValueTask ReadAllAsync()
        {
            var source = copier._source;
            long readable = Math.Min(copier._size, source.Size);
            var walker = new ExtentWalker(source, 0, readable);
            // The data run found but not read yet: neighbouring data extents are read together.
            long runStart = 0, runEnd = 0;
            while (true)
            {
                Extent? next;
                try
                {
                    next = await walker.NextAsync(useAsync, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    throw new IOException($"error while reading block status at offset {walker.Probing}: {e.Message}", e);
                }
                if (next is not { } extent)
                {
                    break;
                }
                if (extent.IsData)
                {
                    if (runEnd != extent.Offset)
                    {
                        runStart = extent.Offset;
                    }
                    runEnd = extent.End;
                    // Read the whole chunks now, so a long data extent streams instead of waiting for its end.
                    while (NextBoundary(runStart) <= runEnd)
                    {
                        long boundary = NextBoundary(runStart);
                        await ReadAsync(runStart, (int)(boundary - runStart)).ConfigureAwait(false);
                        runStart = boundary;
                    }
                    continue;
                }
                if (runEnd > runStart)
                {
                    await ReadAsync(runStart, (int)(runEnd - runStart)).ConfigureAwait(false);
                }
                runStart = runEnd = 0;
                _batch.End = extent.End;
            }
            if (runEnd > runStart)
            {
                await ReadAsync(runStart, (int)(runEnd - runStart)).ConfigureAwait(false);
            }
            // Past a short source (qemu rounds raw files up to whole sectors): zeros.
            _batch.End = copier._size;
            await queue.WriteAsync(_batch, cancellationToken).ConfigureAwait(false);
            _batch = new Batch(copier._size);
        }

        /// <summary>Reads a piece of data into the batch, first queuing the batch when the piece does not fit.</summary>
        private async ValueTask ReadAsync(long offset, int length)
        {
            if (_batch.Used + length > ChunkSize)
            {
                var full = _batch;
                _batch = new Batch(full.End);
                await queue.WriteAsync(full, cancellationToken).ConfigureAwait(false);
            }
            _batch.Buffer ??= ArrayPool<byte>.Shared.Rent(ChunkSize);
            try
            {
                await copier._source.ReadCoreAsync(_batch.Buffer.AsMemory(_batch.Used, length), offset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new IOException($"error while reading at byte {offset}: {e.Message}", e);
            }
            _batch.Segments.Add(new Segment(offset, length, _batch.Used));
            _batch.Used += length;
            _batch.End = offset + length;
        }
    }
}
