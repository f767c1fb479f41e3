using System.Buffers;
using Qed.Tables;

namespace Qed.Image;

// Copy-up: what a newly allocated cluster holds around the payload (step 4 of the write ordering in QedImage.cs).
public sealed partial class QedImage
{
    /// <summary>Writes <paramref name="count"/> new clusters at <paramref name="hostOffset"/>: the payload at its place and the rest of the first and last cluster copied up from beneath.</summary>
    private async ValueTask WriteNewClustersAsync(long hostOffset, long guestOffset, ReadOnlyMemory<byte> payload, int count, ulong firstState, ulong lastState, bool useAsync, CancellationToken cancellationToken)
    {
        int head = _geometry.OffsetInCluster(guestOffset);
        long total = (long)count << _geometry.ClusterBits;
        int tail = (int)(total - head - payload.Length);
        long guestStart = guestOffset - head;
        long guestTail = guestOffset + payload.Length;

        if (total <= CombinedWriteLimit)
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent((int)total);
            try
            {
                var whole = buffer.AsMemory(0, (int)total);
                await FillCopyUpAsync(whole[..head], guestStart, firstState, useAsync, cancellationToken).ConfigureAwait(false);
                payload.CopyTo(whole[head..]);
                await FillCopyUpAsync(whole[(head + payload.Length)..], guestTail, lastState, useAsync, cancellationToken).ConfigureAwait(false);
                await _file.WriteAsync(whole, hostOffset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            return;
        }

        await CopyUpAsync(hostOffset, head, guestStart, firstState, useAsync, cancellationToken).ConfigureAwait(false);
        await _file.WriteAsync(payload, hostOffset + head, useAsync, cancellationToken).ConfigureAwait(false);
        await CopyUpAsync(hostOffset + head + payload.Length, tail, guestTail, lastState, useAsync, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask CopyUpAsync(long hostOffset, int length, long guestOffset, ulong previousState, bool useAsync, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var part = buffer.AsMemory(0, length);
            await FillCopyUpAsync(part, guestOffset, previousState, useAsync, cancellationToken).ConfigureAwait(false);
            await _file.WriteAsync(part, hostOffset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>What the untouched part of a newly allocated cluster must hold: zeros for a former zero cluster (the spec; QEMU copies backing data here, QED-FORMAT.md §5.5), else what the backing chain shows.</summary>
    private ValueTask FillCopyUpAsync(Memory<byte> destination, long guestOffset, ulong previousState, bool useAsync, CancellationToken cancellationToken)
    {
        if (destination.IsEmpty)
        {
            return ValueTask.CompletedTask;
        }
        if (previousState == TableEntry.Zero)
        {
            destination.Span.Clear();
            return ValueTask.CompletedTask;
        }
        if (_backing is null && NamesBackingFile)
        {
            // Opened without its backing chain: zeros here would silently replace the backing data.
            throw new QedException($"'{FileName}' was opened without its backing file: a partial write into an unallocated cluster cannot copy up the backing data");
        }
        return ReadBackingAsync(destination, guestOffset, useAsync, cancellationToken);
    }
}
