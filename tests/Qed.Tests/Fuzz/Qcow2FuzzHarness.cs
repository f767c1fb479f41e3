using Qed.Backing;
using Qed.Check;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Runs everything the library does with a (possibly hostile) qcow2 image, in memory: open for info (metadata only)
/// and describe; open read-only, map and read every extent, convert with the CLI's copier; open for a check (no
/// backing file) and check; and a writable open, which qcow2 always refuses (also when the caller opened the file).
/// Each must end in success or one of our own <see cref="QedException"/>s, and the file must stay as it was.
/// </summary>
internal static class Qcow2FuzzHarness
{
    /// <summary>Status queries per walk: a huge mutated size must not turn one case into hours of mapping.</summary>
    private const int StatusBudget = 4000;

    /// <summary>Largest image the convert step copies (its target keeps no bytes, but the walk is as long as the disk).</summary>
    private const long ConvertLimit = 32L << 20;

    /// <summary>Runs every step on <paramref name="input"/>, opened as <paramref name="path"/> (its backing names resolve next to it).</summary>
    public static FuzzOutcome Run(byte[] input, string path)
    {
        int refused = 0;
        bool opened = false;
        CheckResult? check = null;
        try
        {
            byte[] contents = (byte[])input.Clone();
            var file = new MemoryFileAccessor(path, contents, readOnly: true);
            refused |= Tolerate(() => Describe(file, path), 1);
            refused |= Tolerate(() => opened = ReadAll(file, path), 2);
            refused |= Tolerate(() => check = Check(file, path), 4);
            if (!contents.AsSpan().SequenceEqual(input))
            {
                throw new InvalidOperationException("a read-only open changed the file");
            }
            if (OpensWritable(input, path))
            {
                throw new InvalidOperationException("a qcow2 image opened writable");
            }
            return new FuzzOutcome(null, opened, false, refused, null, check);
        }
        catch (Exception e)
        {
            return new FuzzOutcome($"{e.GetType().Name}: {e.Message}\n{e.StackTrace}", opened, false, refused, null, check);
        }
    }

    private static int Tolerate(Action action, int bit)
    {
        try
        {
            action();
            return 0;
        }
        catch (QedException)
        {
            return bit;
        }
    }

    private static BlockDevice Open(MemoryFileAccessor file, string path, ImageOpenOptions options) =>
        ChainOpener.OpenAsync(file, ImageFormats.Qcow2, options with { L2CacheSize = 64 * 1024, Locking = false }, BackingChain.Start(path), useAsync: false, CancellationToken.None)
            .GetAwaiter().GetResult();

    private static void Describe(MemoryFileAccessor file, string path)
    {
        using var device = Open(file, path, new ImageOpenOptions { ReadOnly = true, MetadataOnly = true, NoBacking = true });
        _ = ImageFormats.Qcow2.Describe(device);
    }

    private static bool ReadAll(MemoryFileAccessor file, string path)
    {
        using var device = Open(file, path, new ImageOpenOptions { ReadOnly = true });
        _ = ImageFormats.Qcow2.Describe(device);
        Walk(device);
        if (device.Size <= ConvertLimit)
        {
            using var raw = new RawImage(new DiscardingFileAccessor("convert.raw", device.Size));
            try
            {
                new Qed.Copy.SparseCopier(device, raw, device.Size, 65536).Copy();
            }
            catch (IOException e) when (e.InnerException is QedException)
            {
                // The copier words our error with the offset it met it at, as qemu-img convert does.
                throw new QedException(e.Message, e);
            }
        }
        return true;
    }

    private static CheckResult? Check(MemoryFileAccessor file, string path)
    {
        if (!ImageFormats.Qcow2.CanCheck)
        {
            return null;
        }
        using var device = Open(file, path, new ImageOpenOptions { ReadOnly = true, NoBacking = true, SkipCheckOnOpen = true });
        return ImageFormats.Qcow2.Check(device);
    }

    private static bool OpensWritable(byte[] input, string path)
    {
        var file = new MemoryFileAccessor(path, (byte[])input.Clone());
        try
        {
            using var device = Open(file, path, new ImageOpenOptions { ReadOnly = false });
            return true;
        }
        catch (QedException)
        {
            return false;
        }
    }

    /// <summary>Maps the disk extent by extent and reads what each extent holds (the data side of convert and map).</summary>
    private static void Walk(BlockDevice device)
    {
        byte[] buffer = new byte[64 * 1024];
        long offset = 0;
        for (int budget = StatusBudget; offset < device.Size && budget > 0; budget--)
        {
            var status = device.GetStatus(offset, device.Size - offset);
            if (status.Length <= 0 || status.Offset != offset)
            {
                throw new InvalidOperationException($"GetStatus at {offset} answered {status}");
            }
            int n = (int)Math.Min(buffer.Length, status.Length);
            device.Read(buffer.AsMemory(0, n), offset);
            offset += status.Length;
        }
    }
}
