using System.Buffers;
using System.Diagnostics;
using Qed.Extents;
using Qed.Image;
using Qed.IO;

namespace Qed.Backing;

/// <summary>What a commit did: bytes of data copied into the base, bytes made to read as zeros there, whether the base grew and the top was emptied.</summary>
internal readonly record struct CommitResult(long DataBytes, long ZeroBytes, bool Grew, bool Emptied);

/// <summary>
/// Folds the layers above a base image of a chain into that base (<c>qemu-img commit</c>): afterwards the base reads,
/// over the top image's size, what the top image read before.
/// </summary>
/// <remarks>
/// The chain is open with the base writable (<see cref="ImageOpenOptions.WritableBackingDepth"/>). Write ordering:
/// <list type="number">
/// <item>Grow the base to the top's size where it is shorter (durably). The top and every layer above the base read the
/// same afterwards: past the base's old end they read zeros, and so does the base's new area (where the base has a
/// backing file of its own that is longer, that area is made zeros next, before anything else).</item>
/// <item>Walk the top's extent map. An extent answered above the base (depth below the base's) is what the top reads
/// there and what the base must read: data is copied into the base; zero clusters, and unallocated space that reads as
/// zeros because a layer in between is shorter, become write-zeroes on the base. Extents the base or a layer below it
/// answers are already right and are neither read nor written. Writing the base changes nothing the top reads, since
/// every range written is answered by a layer above the base.</item>
/// <item>Flush the base: only now does it durably hold the data.</item>
/// <item>When asked (and the top is a QED image with the base as its own backing file), empty the top
/// (<see cref="QedImage.MakeEmpty"/>): it then reads everything through to the base, which holds the same content.</item>
/// </list>
/// A crash at any point loses nothing: until step 4 the top and the layers above the base are untouched and still read
/// what they read before; during step 4 every partial state reads the same, because the base already holds it.
/// </remarks>
internal static class ChainCommit
{
    private const int ChunkSize = 1 << 20;

    /// <summary>The layer <paramref name="depth"/> levels below <paramref name="top"/> (0: the top itself), or null when the chain is shorter.</summary>
    public static BlockDevice? Layer(BlockDevice top, int depth)
    {
        BlockDevice? device = top;
        for (int i = 0; i < depth && device is not null; i++)
        {
            device = device.Backing;
        }
        return device;
    }

    /// <summary>Commits the layers above depth <paramref name="baseDepth"/> of <paramref name="top"/>'s chain into that layer (steps 1 to 4).</summary>
    /// <param name="top">The top image, writable when <paramref name="makeEmpty"/>.</param>
    /// <param name="baseDepth">The base's depth in the chain (1: the top's backing file).</param>
    /// <param name="makeEmpty">Empty the top afterwards (only with <paramref name="baseDepth"/> 1 and a QED top).</param>
    /// <param name="progress">Called with (bytes of the top's disk walked, the top's size) as the walk goes.</param>
    /// <param name="rateLimit">Bytes per second the base is written at most; 0 for no limit.</param>
    /// <param name="useAsync">Whether to use the async I/O path.</param>
    /// <param name="cancellationToken">Stops the commit between two writes; the base may then hold part of the data, the top is untouched.</param>
    /// <exception cref="QedException">The base cannot grow to the top's size, or I/O failed.</exception>
    public static async ValueTask<CommitResult> RunAsync(BlockDevice top, int baseDepth, bool makeEmpty, Action<long, long>? progress, long rateLimit, bool useAsync, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(top);
        ArgumentOutOfRangeException.ThrowIfLessThan(baseDepth, 1);
        var baseDevice = Layer(top, baseDepth) ?? throw new ArgumentOutOfRangeException(nameof(baseDepth), baseDepth, $"'{top.FileName}' has no backing file at depth {baseDepth}.");
        if (baseDevice.IsReadOnly)
        {
            throw new QedReadOnlyException($"'{baseDevice.FileName}' is open read-only: committing into it needs write access");
        }
        var emptied = makeEmpty ? top as QedImage : null;
        if (makeEmpty && (emptied is null || baseDepth != 1))
        {
            throw new ArgumentException("Only a QED top image can be emptied, and only into its own backing file.", nameof(makeEmpty));
        }

        // Step 1.
        bool grew = await GrowAsync(top, baseDevice, useAsync, cancellationToken).ConfigureAwait(false);

        // Step 2.
        long dataBytes = 0, zeroBytes = 0;
        var throttle = new Throttle(rateLimit);
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(ChunkSize, Math.Max(top.Size, 1)));
        try
        {
            progress?.Invoke(0, top.Size);
            var walker = new ExtentWalker(top, 0, top.Size);
            while (await walker.NextAsync(useAsync, cancellationToken).ConfigureAwait(false) is { } extent)
            {
                if (extent.Depth < baseDepth)
                {
                    if (extent.IsData)
                    {
                        for (long done = 0; done < extent.Length;)
                        {
                            int n = (int)Math.Min(buffer.Length, extent.Length - done);
                            var chunk = buffer.AsMemory(0, n);
                            long at = extent.Offset + done;
                            await ReadAsync(top, chunk, at, useAsync, cancellationToken).ConfigureAwait(false);
                            await WriteAsync(baseDevice, chunk, at, useAsync, cancellationToken).ConfigureAwait(false);
                            done += n;
                            dataBytes += n;
                            progress?.Invoke(at + n, top.Size);
                            await throttle.WaitAsync(n, useAsync, cancellationToken).ConfigureAwait(false);
                        }
                    }
                    else
                    {
                        // A zero cluster, or space that reads as zeros because a layer in between ends before it.
                        await WriteZeroesAsync(baseDevice, extent.Offset, extent.Length, useAsync, cancellationToken).ConfigureAwait(false);
                        zeroBytes += extent.Length;
                    }
                }
                progress?.Invoke(extent.End, top.Size);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        // Step 3.
        await FlushAsync(baseDevice, useAsync, cancellationToken).ConfigureAwait(false);

        // Step 4.
        if (emptied is not null)
        {
            await (useAsync ? emptied.MakeEmptyAsync(cancellationToken) : Sync(emptied.MakeEmpty)).ConfigureAwait(false);
        }
        return new CommitResult(dataBytes, zeroBytes, grew, emptied is not null);
    }

    /// <summary>Step 1: grows the base to the top's size where it is shorter; returns true when it grew.</summary>
    private static async ValueTask<bool> GrowAsync(BlockDevice top, BlockDevice baseDevice, bool useAsync, CancellationToken cancellationToken)
    {
        long oldSize = baseDevice.Size;
        long size = top.Size;
        if (oldSize >= size)
        {
            return false;
        }
        try
        {
            if (useAsync)
            {
                await baseDevice.ResizeAsync(size, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                baseDevice.Resize(size);
            }
        }
        catch (Exception e) when (e is ArgumentException or QedUnsupportedException)
        {
            string reason = e is ArgumentException argument && argument.ParamName is not null
                ? argument.Message.Replace($" (Parameter '{argument.ParamName}')", "", StringComparison.Ordinal)
                : e.Message;
            throw new QedException($"Cannot grow '{baseDevice.FileName}' from {oldSize} to the {size} bytes of '{top.FileName}': {reason}", e);
        }
        // In a QED base over a longer backing file, the new area would show that file's data; the top read zeros there.
        long shown = FallThrough.Readable(baseDevice.Backing, oldSize, size - oldSize);
        if (shown > 0)
        {
            await WriteZeroesAsync(baseDevice, oldSize, shown, useAsync, cancellationToken).ConfigureAwait(false);
        }
        return true;
    }

    private static ValueTask ReadAsync(BlockDevice device, Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        useAsync ? device.ReadAsync(buffer, offset, cancellationToken) : Sync(() => device.Read(buffer, offset));

    private static ValueTask WriteAsync(BlockDevice device, ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        useAsync ? device.WriteAsync(buffer, offset, cancellationToken) : Sync(() => device.Write(buffer, offset));

    // May unmap: a raw base gets holes where it can, a QED base keeps its clusters allocated (as holes) or marks zero clusters.
    private static ValueTask WriteZeroesAsync(BlockDevice device, long offset, long length, bool useAsync, CancellationToken cancellationToken) =>
        useAsync
            ? device.WriteZeroesAsync(offset, length, WriteZeroesFlags.MayUnmap, cancellationToken)
            : Sync(() => device.WriteZeroes(offset, length, WriteZeroesFlags.MayUnmap));

    private static ValueTask FlushAsync(BlockDevice device, bool useAsync, CancellationToken cancellationToken) =>
        useAsync ? device.FlushAsync(cancellationToken) : Sync(device.Flush);

    private static ValueTask Sync(Action action)
    {
        action();
        return ValueTask.CompletedTask;
    }

    /// <summary>Keeps the bytes written per second under a limit by sleeping once ahead of it.</summary>
    private sealed class Throttle(long bytesPerSecond)
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _bytes;

        public async ValueTask WaitAsync(long bytes, bool useAsync, CancellationToken cancellationToken)
        {
            if (bytesPerSecond <= 0)
            {
                return;
            }
            _bytes += bytes;
            var due = TimeSpan.FromSeconds((double)_bytes / bytesPerSecond) - _clock.Elapsed;
            if (due > TimeSpan.Zero)
            {
                if (useAsync)
                {
                    await Task.Delay(due, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    cancellationToken.WaitHandle.WaitOne(due);
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
        }
    }
}
