using System.Buffers;
using Qed.Formats.Qcow2.Compression;

namespace Qed.Formats.Qcow2.Writer;

/// <summary>Compressed clusters (<c>convert -c</c>): compressed on every core, packed back to back in the file.</summary>
internal sealed partial class Qcow2TargetImage
{
    /// <summary>
    /// Compresses whole clusters (the last one of the disk may be short: it is padded with zeros), on every core at once,
    /// then stores them in disk order: each right after the previous compressed one, or uncompressed when compression
    /// does not make it smaller; runs that are contiguous in the file go out in one write.
    /// </summary>
    private async ValueTask WriteCompressedClustersAsync(ReadOnlyMemory<byte> data, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        int clusterSize = (int)_clusterSize;
        int count = (int)((data.Length + _clusterSize - 1) / _clusterSize);
        int[] lengths = new int[count];
        byte[] compressed = ArrayPool<byte>.Shared.Rent(count * clusterSize);
        byte[] packed = ArrayPool<byte>.Shared.Rent(count * clusterSize);
        try
        {
            void CompressOne(int i)
            {
                var cluster = data.Span.Slice(i * clusterSize, Math.Min(clusterSize, data.Length - i * clusterSize));
                var destination = compressed.AsSpan(i * clusterSize, clusterSize);
                if (cluster.Length == clusterSize)
                {
                    lengths[i] = Qcow2Compression.Compress(_settings.CompressionType, cluster, destination);
                    return;
                }
                byte[] padded = ArrayPool<byte>.Shared.Rent(clusterSize);
                try
                {
                    cluster.CopyTo(padded);
                    padded.AsSpan(cluster.Length, clusterSize - cluster.Length).Clear();
                    lengths[i] = Qcow2Compression.Compress(_settings.CompressionType, padded.AsSpan(0, clusterSize), destination);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(padded);
                }
            }
            if (count == 1)
            {
                CompressOne(0);
            }
            else
            {
                Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount, CancellationToken = cancellationToken }, CompressOne);
            }

            // Place them in order under the lock; compressed bytes are copied together so neighbours go out in one write.
            var runs = new List<(long Host, ReadOnlyMemory<byte> Bytes)>(count);
            int packedLength = 0;
            lock (_lock)
            {
                for (int i = 0; i < count; i++)
                {
                    long cluster = (offset >> _clusterBits) + i;
                    int length = lengths[i];
                    if (length < 0)
                    {
                        long host = MapForWriteUnsynchronized(cluster, 0, clusterSize);
                        runs.Add((host, data.Slice(i * clusterSize, Math.Min(clusterSize, data.Length - i * clusterSize))));
                        continue;
                    }
                    long start = AllocateCompressedUnsynchronized(length);
                    var (table, index) = TableForWriteUnsynchronized(cluster);
                    table[index] = Qcow2CompressedDescriptor.Encode((ulong)start, length, _clusterBits);
                    if (_extended)
                    {
                        table[index + 1] = 0;
                    }
                    compressed.AsSpan(i * clusterSize, length).CopyTo(packed.AsSpan(packedLength));
                    var bytes = packed.AsMemory(packedLength, length);
                    if (runs.Count > 0 && runs[^1].Host + runs[^1].Bytes.Length == start && IsPackedTail(runs[^1].Bytes, packed, packedLength))
                    {
                        runs[^1] = (runs[^1].Host, packed.AsMemory(packedLength - runs[^1].Bytes.Length, runs[^1].Bytes.Length + length));
                    }
                    else
                    {
                        runs.Add((start, bytes));
                    }
                    packedLength += length;
                }
                _dirty = true;
            }
            foreach (var (host, bytes) in runs)
            {
                await _file.WriteAsync(bytes, host, useAsync, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(compressed);
            ArrayPool<byte>.Shared.Return(packed);
        }
    }

    /// <summary>True when <paramref name="run"/> is the part of <paramref name="packed"/> that ends at <paramref name="end"/>.</summary>
    private static bool IsPackedTail(ReadOnlyMemory<byte> run, byte[] packed, int end) =>
        System.Runtime.InteropServices.MemoryMarshal.TryGetArray(run, out var segment) && segment.Array == packed && segment.Offset + segment.Count == end;

    /// <summary>Takes <paramref name="length"/> bytes for a compressed cluster right after the previous one, unless the host cluster they would share has as many sharers as a refcount can count.</summary>
    private long AllocateCompressedUnsynchronized(int length)
    {
        if ((_end & (_clusterSize - 1)) != 0 && _tailSharers + 1 > _refcountMax)
        {
            _end = (_end + _clusterSize - 1) & ~(_clusterSize - 1);
        }
        long start = _end;
        bool sharesTail = (start & (_clusterSize - 1)) != 0 && start >> _clusterBits == _tailCluster;
        _end = start + length;
        long last = (_end - 1) >> _clusterBits;
        _tailSharers = sharesTail && last == _tailCluster ? _tailSharers + 1 : 1;
        _tailCluster = (_end & (_clusterSize - 1)) == 0 ? -1 : last;
        if (_tailCluster < 0)
        {
            _tailSharers = 0;
        }
        return start;
    }
}
