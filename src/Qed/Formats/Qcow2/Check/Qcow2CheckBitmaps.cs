namespace Qed.Formats.Qcow2.Check;

/// <summary>
/// Counts the references of persistent dirty bitmaps (QCOW2.md §9): the bitmap directory, each bitmap's table and the
/// data clusters it points to, as QEMU's check does when the bitmaps extension is in use.
/// </summary>
/// <remarks>
/// A directory or table that QEMU would not load (<see cref="Qcow2BitmapDirectory"/>'s rules) is one corruption and stops
/// the check (Invalid argument), as in QEMU. The open already refuses a broken directory and the broken table of a bitmap
/// not in use; the table of a bitmap in use is first read here.
/// </remarks>
internal static class Qcow2CheckBitmaps
{
    /// <summary>Counts the bitmaps' clusters through <paramref name="checker"/>.</summary>
    public static async ValueTask CountAsync(Qcow2Checker checker, bool useAsync, CancellationToken cancellationToken)
    {
        var layout = checker.Layout;
        if (layout.BitmapCount == 0)
        {
            return;
        }
        checker.Count(layout.BitmapDirectoryOffset, (long)Math.Min(layout.BitmapDirectorySize, long.MaxValue));
        var tables = await LoadDirectoryAsync(checker, useAsync, cancellationToken).ConfigureAwait(false);
        if (tables is null)
        {
            checker.AddCorruption();
            throw Qcow2Checker.Abort(Errno.InvalidArgument);
        }
        foreach (var (offset, size) in tables)
        {
            checker.Count(offset, size * 8L);
            var entries = await Qcow2BitmapDirectory.ReadTableAsync(checker.File, offset, size, checker.ClusterSize, useAsync, cancellationToken).ConfigureAwait(false);
            if (entries is null)
            {
                checker.AddCorruption();
                throw Qcow2Checker.Abort(Errno.InvalidArgument);
            }
            foreach (ulong entry in entries)
            {
                ulong data = Qcow2BitmapDirectory.DataOffset(entry);
                if (data != 0)
                {
                    checker.Count(data, checker.ClusterSize);
                }
            }
        }
    }

    /// <summary>The (offset, entries) of each bitmap's table, or null when QEMU would refuse the directory.</summary>
    private static async ValueTask<List<(ulong Offset, uint Size)>?> LoadDirectoryAsync(Qcow2Checker checker, bool useAsync, CancellationToken cancellationToken)
    {
        var layout = checker.Layout;
        ulong size = layout.BitmapDirectorySize;
        // The parse refuses an empty directory (fewer bitmaps than counted); the bound keeps the allocation sane.
        if (size > Qcow2Extensions.MaxBitmapDirectorySize || layout.BitmapDirectoryOffset > long.MaxValue)
        {
            return null;
        }
        byte[] directory = new byte[size];
        await Qcow2RefcountReader.ReadAsync(checker.File, directory, (long)layout.BitmapDirectoryOffset, checker.FileLength, useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            return [.. Qcow2BitmapDirectory.Parse(directory, layout.BitmapCount, checker.ClusterSize, checker.VirtualSize).Select(e => (e.TableOffset, e.TableSize))];
        }
        catch (QedFormatException)
        {
            return null;
        }
    }
}
