using System.Buffers;
using Qed.Formats.Qcow2.Compression;
using Qed.IO;

namespace Qed.Formats.Qcow2.Writer;

/// <summary>Reading back and allocation status: what merges of partial units read, and what the device reports.</summary>
internal sealed partial class Qcow2TargetImage
{
    protected internal override async ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        long end = offset + destination.Length;
        long position = offset;
        while (position < end)
        {
            long cluster = position >> _clusterBits;
            long inCluster = position & (_clusterSize - 1);
            int n = (int)Math.Min(_clusterSize - inCluster, end - position);
            var piece = destination.Slice((int)(position - offset), n);
            var (entry, bitmap) = Entry(cluster);
            if ((entry & CompressedFlag) != 0)
            {
                await ReadCompressedAsync(entry, piece, inCluster, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else if (_extended)
            {
                // Subcluster by subcluster: allocated ones from the file, zero ones as zeros, the rest from below.
                for (long at = 0; at < n;)
                {
                    long within = inCluster + at;
                    int index = (int)(within / _subclusterSize);
                    int m = (int)Math.Min(_subclusterSize - within % _subclusterSize, n - at);
                    var part = piece.Slice((int)at, m);
                    if ((bitmap & (1UL << index)) != 0)
                    {
                        await _file.ReadZeroPaddedAsync(part, (long)(entry & OffsetMask) + within, useAsync, cancellationToken).ConfigureAwait(false);
                    }
                    else if ((bitmap & (1UL << (index + Subclusters))) != 0)
                    {
                        part.Span.Clear();
                    }
                    else
                    {
                        await ReadBelowAsync(part, position + at, useAsync, cancellationToken).ConfigureAwait(false);
                    }
                    at += m;
                }
            }
            else if ((entry & ZeroFlag) != 0)
            {
                piece.Span.Clear();
            }
            else if ((entry & OffsetMask) != 0)
            {
                await _file.ReadZeroPaddedAsync(piece, (long)(entry & OffsetMask) + inCluster, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await ReadBelowAsync(piece, position, useAsync, cancellationToken).ConfigureAwait(false);
            }
            position += n;
        }
    }

    protected internal override ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        long end = offset + length;
        long granule = _extended ? _subclusterSize : _clusterSize;
        var (state, host) = StateAt(offset);
        long position = (offset & ~(granule - 1)) + granule;
        while (position < end)
        {
            var (next, nextHost) = StateAt(position);
            bool contiguous = state != BlockState.Data || host < 0 ? nextHost == host : nextHost == host + (position - offset);
            if (next != state || !contiguous)
            {
                break;
            }
            position = next == BlockState.Unallocated && _l2[position / _settings.L2Span] is null
                ? (position / _settings.L2Span + 1) * _settings.L2Span
                : position + granule;
        }
        return ValueTask.FromResult(new BlockStatus(offset, Math.Min(position, end) - offset, state, host));
    }

    /// <summary>What the device holds at <paramref name="offset"/> (its subcluster or cluster), and the host offset of data.</summary>
    private (BlockState State, long Host) StateAt(long offset)
    {
        long cluster = offset >> _clusterBits;
        long inCluster = offset & (_clusterSize - 1);
        var (entry, bitmap) = Entry(cluster);
        if ((entry & CompressedFlag) != 0)
        {
            return (BlockState.Data, -1);
        }
        long host = (long)(entry & OffsetMask);
        if (_extended)
        {
            int index = (int)(inCluster / _subclusterSize);
            return (bitmap & (1UL << index)) != 0 ? (BlockState.Data, host + inCluster)
                : (bitmap & (1UL << (index + Subclusters))) != 0 ? (BlockState.Zero, -1)
                : (BlockState.Unallocated, -1);
        }
        return (entry & ZeroFlag) != 0 ? (BlockState.Zero, -1)
            : host != 0 ? (BlockState.Data, host + inCluster)
            : (BlockState.Unallocated, -1);
    }

    private async ValueTask ReadCompressedAsync(ulong entry, Memory<byte> piece, long inCluster, bool useAsync, CancellationToken cancellationToken)
    {
        var descriptor = Qcow2CompressedDescriptor.Decode(entry, _clusterBits);
        byte[] input = ArrayPool<byte>.Shared.Rent(descriptor.Length);
        byte[] cluster = ArrayPool<byte>.Shared.Rent((int)_clusterSize);
        try
        {
            await _file.ReadZeroPaddedAsync(input.AsMemory(0, descriptor.Length), (long)descriptor.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
            Qcow2Compression.Decompress(_settings.CompressionType, input.AsSpan(0, descriptor.Length), cluster.AsSpan(0, (int)_clusterSize));
            cluster.AsSpan((int)inCluster, piece.Length).CopyTo(piece.Span);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            ArrayPool<byte>.Shared.Return(cluster);
        }
    }

    /// <summary>Reads what lies below this image: the backing file (zeros past its end), or zeros.</summary>
    private async ValueTask ReadBelowAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        int readable = _backing is null ? 0 : (int)Math.Clamp(_backing.Size - offset, 0, destination.Length);
        destination.Span[readable..].Clear();
        if (readable > 0)
        {
            await _backing!.ReadCoreAsync(destination[..readable], offset, useAsync, cancellationToken).ConfigureAwait(false);
        }
    }
}
