using Qed.Backing;
using Qed.Check;
using Qed.Image;
using Qed.IO;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Runs every operation a user can apply to an image on one (possibly hostile) input: open read-only, map and read
/// every extent, convert (with the CLI's copier), check; open writable (with the automatic repair), check -r all, read, write, copy out as convert
/// does. Each must end in success or one of our own <see cref="QedException"/>s.
/// </summary>
internal static class FuzzHarness
{
    /// <summary>Status queries per walk: a huge mutated size must not turn one case into hours of mapping.</summary>
    private const int StatusBudget = 4000;

    /// <summary>Returns null when the input was handled correctly, else what went wrong.</summary>
    public static string? Run(byte[] input, string path)
    {
        try
        {
            ReadOnlyPass(input, path);
            WritablePass(input, path);
            return null;
        }
        catch (Exception e)
        {
            return $"{e.GetType().Name}: {e.Message}\n{e.StackTrace}";
        }
    }

    private static void ReadOnlyPass(byte[] input, string path)
    {
        var file = new MemoryFileAccessor(path, (byte[])input.Clone(), readOnly: true);
        QedImage image;
        try
        {
            image = Open(file, path, readOnly: true);
        }
        catch (QedException)
        {
            return;
        }
        using (image)
        {
            Tolerate(() => Walk(image, copy: true));
            Tolerate(() => Convert(image));
            Tolerate(() => image.Check());
        }
        if (!file.ToArray().AsSpan().SequenceEqual(input))
        {
            throw new InvalidOperationException("a read-only open changed the file");
        }
    }

    private static void WritablePass(byte[] input, string path)
    {
        var file = new MemoryFileAccessor(path, (byte[])input.Clone());
        QedImage image;
        try
        {
            image = Open(file, path, readOnly: false);
        }
        catch (QedException)
        {
            return;
        }
        using (image)
        {
            Tolerate(() => image.Check(RepairMode.All));
            Tolerate(() => image.Check());
            Tolerate(() => Walk(image, copy: false));
            var random = new Random(input.Length);
            for (int i = 0; i < 4 && image.Size > 0; i++)
            {
                long offset = random.NextInt64(image.Size);
                int length = (int)Math.Min(image.Size - offset, random.Next(1, 20000));
                byte[] data = new byte[length];
                random.NextBytes(data);
                Tolerate(() => image.Write(data, offset));
                if (i == 3)
                {
                    Tolerate(() => image.WriteZeroes(offset, length));
                }
            }
            Tolerate(image.Flush);
            Tolerate(() => image.Check());
        }
    }

    private static QedImage Open(MemoryFileAccessor file, string path, bool readOnly) =>
        QedImage.OpenCoreAsync(file, new QedOpenOptions { ReadOnly = readOnly, L2CacheSize = 64 * 1024 }, BackingChain.Start(path), useAsync: false, CancellationToken.None)
            .GetAwaiter().GetResult();

    /// <summary>Maps the disk extent by extent and reads what each extent holds (the data side of convert and map).</summary>
    private static void Walk(BlockDevice image, bool copy)
    {
        byte[] buffer = new byte[64 * 1024];
        // Convert reads the same extents and writes their data to a sink; the sink here keeps one buffer's worth.
        using var target = copy ? new MemoryFileAccessor("copy.raw", new byte[buffer.Length]) : null;
        long offset = 0;
        for (int budget = StatusBudget; offset < image.Size && budget > 0; budget--)
        {
            var status = image.GetStatus(offset, image.Size - offset);
            if (status.Length <= 0 || status.Offset != offset)
            {
                throw new InvalidOperationException($"GetStatus at {offset} answered {status}");
            }
            int n = (int)Math.Min(buffer.Length, status.Length);
            image.Read(buffer.AsMemory(0, n), offset);
            if (target is not null && status.State != BlockState.Zero)
            {
                target.WriteAsync(buffer.AsMemory(0, n), 0, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
            }
            offset += status.Length;
        }
    }

    /// <summary>Largest image the convert step copies (into memory).</summary>
    private const long ConvertLimit = 32L << 20;

    /// <summary>Runs the copier <c>qed convert</c> uses, into a raw image in memory.</summary>
    private static void Convert(QedImage image)
    {
        if (image.Size > ConvertLimit)
        {
            return;
        }
        var target = new MemoryFileAccessor("convert.raw", []);
        target.SetLength(image.Size);
        using var raw = new RawImage(target);
        try
        {
            new Qed.Cli.Conversion.SparseCopier(image, raw, image.Size, image.Geometry.ClusterSize).CopyAsync(progress: null).GetAwaiter().GetResult();
        }
        catch (IOException e) when (e.InnerException is QedException)
        {
            // The copier words our error with the offset it met it at, as qemu-img convert does.
        }
    }

    private static void Tolerate(Action action)
    {
        try
        {
            action();
        }
        catch (QedException)
        {
        }
    }
}
