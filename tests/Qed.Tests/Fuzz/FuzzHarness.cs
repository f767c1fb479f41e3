using Qed.Backing;
using Qed.Check;
using Qed.Image;
using Qed.IO;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Runs every operation a user can apply to an image on one (possibly hostile) input, in memory: open read-only, map
/// and read every extent, convert (with the CLI's copier), check; open writable (with the automatic repair), check -r
/// all, check, map and read, write, write zeroes, flush, check. Each must end in success or one of our own
/// <see cref="QedException"/>s, the read-only pass must leave the file as it was, and writes into an image the repair
/// left without corruption must leave it without corruption.
/// </summary>
internal static class FuzzHarness
{
    /// <summary>Status queries per walk: a huge mutated size must not turn one case into hours of mapping.</summary>
    private const int StatusBudget = 4000;

    /// <summary>Largest image the convert step copies (its target keeps no bytes, but the walk is as long as the disk).</summary>
    private const long ConvertLimit = 32L << 20;

    /// <summary>Runs both passes on <paramref name="input"/>, opened as <paramref name="path"/> (its backing names resolve next to it).</summary>
    public static FuzzOutcome Run(byte[] input, string path)
    {
        var steps = new Steps();
        bool openedReadOnly = false, openedWritable = false;
        CheckResult? repair = null, last = null;
        try
        {
            openedReadOnly = ReadOnlyPass(input, path, steps);
            openedWritable = WritablePass(input, path, steps, out repair, out last);
            return new FuzzOutcome(null, openedReadOnly, openedWritable, steps.Refused, repair, last);
        }
        catch (Exception e)
        {
            return new FuzzOutcome($"{e.GetType().Name}: {e.Message}\n{e.StackTrace}", openedReadOnly, openedWritable, steps.Refused, repair, last);
        }
    }

    private static bool ReadOnlyPass(byte[] input, string path, Steps steps)
    {
        byte[] contents = (byte[])input.Clone();
        var file = new MemoryFileAccessor(path, contents, readOnly: true);
        QedImage image;
        try
        {
            image = Open(file, path, readOnly: true);
        }
        catch (QedException)
        {
            return false;
        }
        using (image)
        {
            steps.Tolerate(() => Walk(image, copy: true));
            steps.Tolerate(() => Convert(image));
            steps.Tolerate(() => image.Check());
        }
        // A read-only accessor refuses writes, so the file still lives in the same array unless something got around that.
        if (file.GetLength() != input.Length || !contents.AsSpan().SequenceEqual(input))
        {
            throw new InvalidOperationException("a read-only open changed the file");
        }
        return true;
    }

    private static bool WritablePass(byte[] input, string path, Steps steps, out CheckResult? repair, out CheckResult? last)
    {
        repair = last = null;
        var file = new MemoryFileAccessor(path, (byte[])input.Clone());
        QedImage image;
        try
        {
            image = Open(file, path, readOnly: false);
        }
        catch (QedException)
        {
            return false;
        }
        using (image)
        {
            repair = steps.Tolerate(() => image.Check(RepairMode.All));
            steps.Tolerate(() => image.Check());
            steps.Tolerate(() => Walk(image, copy: false));
            var random = new Random(input.Length);
            for (int i = 0; i < 4 && image.Size > 0; i++)
            {
                long offset = random.NextInt64(image.Size);
                int length = (int)Math.Min(image.Size - offset, random.Next(1, 20000));
                // The engine does not look at the bytes it writes: a pattern is as good as random data, and far cheaper.
                byte[] data = new byte[length];
                data.AsSpan().Fill((byte)random.Next(1, 256));
                steps.Tolerate(() => image.Write(data, offset));
                if (i == 3)
                {
                    steps.Tolerate(() => image.WriteZeroes(offset, length));
                }
            }
            steps.Tolerate(image.Flush);
            last = steps.Tolerate(() => image.Check());
            // Once the repair left no corruption, every entry points inside the file and every allocation goes past its
            // end: our own writes must not make the image corrupt.
            if (repair is { Corruptions: 0, CheckErrors: 0 } && last is { Corruptions: > 0 })
            {
                throw new InvalidOperationException($"writes made a repaired image corrupt: after the repair {repair}, at the end {last}");
            }
        }
        return true;
    }

    private static QedImage Open(MemoryFileAccessor file, string path, bool readOnly) =>
        QedImage.OpenCoreAsync(file, new ImageOpenOptions { ReadOnly = readOnly, L2CacheSize = 64 * 1024 }, BackingChain.Start(path), useAsync: false, CancellationToken.None)
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

    /// <summary>Runs the copier <c>qed convert</c> uses, into a raw target that checks every write's range and keeps no bytes.</summary>
    private static void Convert(QedImage image)
    {
        if (image.Size > ConvertLimit)
        {
            return;
        }
        using var raw = new RawImage(new DiscardingFileAccessor("convert.raw", image.Size));
        try
        {
            new Qed.Copy.SparseCopier(image, raw, image.Size, image.Geometry.ClusterSize).Copy();
        }
        catch (IOException e) when (e.InnerException is QedException)
        {
            // The copier words our error with the offset it met it at, as qemu-img convert does.
            throw new QedException(e.Message, e);
        }
    }

    /// <summary>Runs steps that may end in our own error, and remembers which did (one bit per step, in order).</summary>
    private sealed class Steps
    {
        private int _count;

        public int Refused { get; private set; }

        public void Tolerate(Action action) => Tolerate<object?>(() =>
        {
            action();
            return null;
        });

        public T? Tolerate<T>(Func<T> action)
        {
            int bit = _count++;
            try
            {
                return action();
            }
            catch (QedException)
            {
                Refused |= 1 << Math.Min(bit, 30);
                return default;
            }
        }
    }
}
