using System.Buffers;
using System.Threading.Channels;
using Qed.IO;

namespace Qed.Cli.Conversion;

/// <summary>
/// Copies the disk a source device shows (backing chain included) into an empty, zero-reading target, writing only
/// data that is not zero, so the target stays sparse.
/// </summary>
/// <remarks>
/// 1. The source is walked in large aligned chunks. The allocation status of each chunk is collected through the
///    whole chain; a chunk made only of zero clusters and unallocated ranges is skipped without reading it.
/// 2. Other chunks have their data extents read (the rest is zero-filled); a reader task runs ahead of the writer through a small bounded queue, so reading
///    the next chunks overlaps writing this one.
/// 3. The writer splits each chunk into granules (the target's cluster size, or 4 KiB for raw) and writes only the
///    runs of granules that contain a non-zero byte. The target reads zeros everywhere else.
/// </remarks>
internal sealed class SparseCopier
{
    /// <summary>Bytes read per request: large and sequential.</summary>
    public const int ChunkSize = 2 * 1024 * 1024;

    private const int QueueDepth = 4;

    private readonly BlockDevice _source;
    private readonly BlockDevice _target;
    private readonly long _size;
    private readonly int _granule;

    /// <summary>Creates a copier of the first <paramref name="size"/> bytes; bytes past the source's end read as zeros.</summary>
    /// <param name="source">The device to copy (its backing chain is read through).</param>
    /// <param name="target">An empty device of at least <paramref name="size"/> bytes that reads as zeros.</param>
    /// <param name="size">The size of the copy.</param>
    /// <param name="granule">Smallest unit tested for zeros; a power of two.</param>
    public SparseCopier(BlockDevice source, BlockDevice target, long size, int granule)
    {
        _source = source;
        _target = target;
        _size = size;
        _granule = Math.Clamp(granule, 512, ChunkSize);
    }

    /// <summary>Bytes of the disk handled so far (copied or skipped); read it from the progress callback.</summary>
    public long Done { get; private set; }

    /// <summary>Copies everything, calling <paramref name="progress"/> after each chunk.</summary>
    public async Task CopyAsync(Action<long, long>? progress, CancellationToken cancellationToken = default)
    {
        var queue = Channel.CreateBounded<Chunk>(new BoundedChannelOptions(QueueDepth) { SingleReader = true, SingleWriter = true });
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var reader = Task.Run(() => ReadChunksAsync(queue.Writer, cancel.Token), cancel.Token);
        try
        {
            await foreach (var chunk in queue.Reader.ReadAllAsync(cancel.Token).ConfigureAwait(false))
            {
                try
                {
                    if (chunk.Buffer is not null)
                    {
                        await WriteNonZeroAsync(chunk.Buffer.AsMemory(0, chunk.Length), chunk.Offset, cancel.Token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    if (chunk.Buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(chunk.Buffer);
                    }
                }
                Done = chunk.Offset + chunk.Length;
                progress?.Invoke(Done, _size);
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
        // Surfaces a read failure (the channel was completed with it).
        await reader.ConfigureAwait(false);
    }

    private async Task ReadChunksAsync(ChannelWriter<Chunk> queue, CancellationToken cancellationToken)
    {
        Exception? failure = null;
        try
        {
            long sourceEnd = _source.Size;
            var extents = new List<FlatStatus.Extent>();
            for (long offset = 0; offset < _size; offset += ChunkSize)
            {
                int length = (int)Math.Min(ChunkSize, _size - offset);
                long readable = Math.Clamp(sourceEnd - offset, 0, length);
                extents.Clear();
                if (readable == 0 || await FlatStatus.CollectAsync(_source, offset, readable, extents, cancellationToken).ConfigureAwait(false))
                {
                    await queue.WriteAsync(new Chunk(offset, length, null), cancellationToken).ConfigureAwait(false);
                    continue;
                }
                byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
                try
                {
                    // Only the data extents are read; zero extents and the tail past a short raw source (qemu rounds raw
                    // files up to whole sectors) are zero-filled.
                    Array.Clear(buffer, 0, length);
                    foreach (var extent in extents)
                    {
                        if (!extent.IsZero)
                        {
                            await ReadExtentAsync(buffer.AsMemory((int)(extent.Offset - offset), (int)extent.Length), extent.Offset, cancellationToken).ConfigureAwait(false);
                        }
                    }
                    await queue.WriteAsync(new Chunk(offset, length, buffer), cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }
            }
        }
        catch (Exception e)
        {
            failure = e;
        }
        queue.TryComplete(failure);
    }

    private async ValueTask ReadExtentAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken)
    {
        try
        {
            await _source.ReadAsync(destination, offset, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw new IOException($"error while reading at byte {offset}: {e.Message}", e);
        }
    }

    private async ValueTask WriteNonZeroAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken cancellationToken)
    {
        int position = 0;
        while (position < data.Length)
        {
            // Skip zero granules, then gather the run of granules that hold data.
            while (position < data.Length && IsZeroGranule(data.Span, position))
            {
                position += _granule;
            }
            int start = position;
            while (position < data.Length && !IsZeroGranule(data.Span, position))
            {
                position += _granule;
            }
            int end = Math.Min(position, data.Length);
            if (end > start)
            {
                try
                {
                    await _target.WriteAsync(data[start..end], offset + start, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    throw new IOException($"error while writing at byte {offset + start}: {e.Message}", e);
                }
            }
        }
    }

    private bool IsZeroGranule(ReadOnlySpan<byte> data, int position) =>
        data.Slice(position, Math.Min(_granule, data.Length - position)).IndexOfAnyExcept((byte)0) < 0;

    private static async ValueTask DrainAsync(ChannelReader<Chunk> queue)
    {
        try
        {
            while (await queue.WaitToReadAsync().ConfigureAwait(false))
            {
                while (queue.TryRead(out var chunk))
                {
                    if (chunk.Buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(chunk.Buffer);
                    }
                }
            }
        }
        catch (Exception)
        {
            // A failed or cancelled reader completes the queue with its error; the buffers are returned either way.
        }
    }

    /// <summary>One chunk of the disk: a buffer with its data, or null when the chunk reads as zeros.</summary>
    private readonly record struct Chunk(long Offset, int Length, byte[]? Buffer);
}
