using Qed.Image;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Power cuts during a resize (QedImage.Resize.cs, QedImage.Shrink.cs): every crash state of the file shows either the
/// old disk or the new one, never an error in <c>qemu-img check</c>, never backing or old data in a grown area, and
/// after a crashed shrink a later grow still reads zeros past the shrunken end.
/// </summary>
public class ResizePowerCutTests
{
    private const long KiB = 1024, MiB = 1 << 20;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Growing_an_overlay_over_a_longer_backing_file_shows_the_old_disk_or_the_new_one_zeros_and_all(bool useAsync)
    {
        var random = new Random(TestSeed.For($"{nameof(ResizePowerCutTests)}.grow({useAsync})"));
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("base.raw"), Enumerable.Repeat((byte)9, (int)(2 * MiB)).ToArray());
        // A partial last cluster that holds data, and whose copy-up put backing bytes past the old end.
        const long oldSize = 1000 * KiB + 512;
        string path = dir.File("o.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "base.raw", "-F", "raw", path, $"{oldSize}");
        Tools.QemuIo(dir.Path, "qed", path, "write -P 5 0 64k", $"write -P 5 {996 * KiB} {oldSize - 996 * KiB}");
        byte[] before = Flat(dir, path);
        byte[] after = [.. before, .. new byte[3 * MiB - oldSize]];

        byte[] initial = File.ReadAllBytes(path);
        var file = new RecordingFileAccessor(path, initial);
        await using (var image = await Img.OpenOver(file, useAsync))
        {
            await Device.Dev.Resize(image, 3 * MiB, useAsync);
        }
        var generator = new CrashStateGenerator(initial, file.Log);
        var recipes = generator.DistinctStates(random, 60);

        int oldDisk = 0, newDisk = 0;
        foreach (var recipe in recipes)
        {
            File.WriteAllBytes(path, generator.Materialize(recipe).ToArray());
            var check = QemuOracle.Check(dir.Path, path);
            Assert.True(check.NoCorruption, $"{recipe}\n{check}");
            byte[] disk = Flat(dir, path);
            Assert.True(disk.AsSpan().SequenceEqual(before) || disk.AsSpan().SequenceEqual(after), $"{recipe}: a disk of {disk.Length} bytes that is neither the old nor the new one");
            _ = disk.Length == before.Length ? oldDisk++ : newDisk++;
        }
        TestSeed.Report($"grow: {recipes.Count} crash states ({generator.Log.Count} file operations in {generator.Epochs.Count} epochs): {oldDisk} old disk, {newDisk} new disk");
        Assert.Equal(recipes.Count, oldDisk + newDisk);
        Assert.True(oldDisk > 0 && newDisk > 0);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Shrinking_shows_the_old_disk_or_the_shrunken_one_and_a_later_grow_reads_zeros(bool useAsync)
    {
        var random = new Random(TestSeed.For($"{nameof(ResizePowerCutTests)}.shrink({useAsync})"));
        using var dir = new TempDirectory();
        string path = dir.File("s.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "8M");
        Tools.QemuIo(dir.Path, "qed", path, "write -P 1 0 3M", "write -P 2 5M 1M");
        const long newSize = MiB + 512;
        byte[] before = Flat(dir, path);
        byte[] after = before[..(int)newSize];

        byte[] initial = File.ReadAllBytes(path);
        var file = new RecordingFileAccessor(path, initial);
        await using (var image = await Img.OpenOver(file, useAsync))
        {
            await Device.Dev.Resize(image, newSize, useAsync);
        }
        var generator = new CrashStateGenerator(initial, file.Log);
        Assert.Contains(generator.Log, op => op.Kind == FileOpKind.SetLength);
        var recipes = generator.DistinctStates(random, 60);

        int oldDisk = 0, newDisk = 0;
        byte[] regrown = [.. after, .. new byte[8 * MiB - newSize]];
        foreach (var recipe in recipes)
        {
            File.WriteAllBytes(path, generator.Materialize(recipe).ToArray());
            var check = QemuOracle.Check(dir.Path, path);
            Assert.True(check.NoCorruption, $"{recipe}\n{check}");
            byte[] disk = Flat(dir, path);
            if (disk.AsSpan().SequenceEqual(before))
            {
                oldDisk++;
                continue;
            }
            Assert.True(disk.AsSpan().SequenceEqual(after), $"{recipe}: a disk of {disk.Length} bytes that is neither the old nor the shrunken one");
            newDisk++;
            // Whatever the crash left past the new end (entries, a partial cluster's tail), a grow shows none of it.
            using (var image = QedImage.Open(path))
            {
                image.Resize(8 * MiB);
            }
            Assert.True(Flat(dir, path).AsSpan().SequenceEqual(regrown), $"{recipe}: grown again after the crash, old data resurfaced");
            Assert.True(QemuOracle.Check(dir.Path, path).NoCorruption);
        }
        TestSeed.Report($"shrink: {recipes.Count} crash states ({generator.Log.Count} file operations in {generator.Epochs.Count} epochs): {oldDisk} old disk, {newDisk} shrunken");
        Assert.Equal(recipes.Count, oldDisk + newDisk);
        Assert.True(oldDisk > 0 && newDisk > 0);
    }

    /// <summary>The guest view of an image as qemu-img converts it to raw.</summary>
    private static byte[] Flat(TempDirectory dir, string path)
    {
        string flat = QemuOracle.Flatten(dir.Path, path);
        try
        {
            return File.ReadAllBytes(flat);
        }
        finally
        {
            File.Delete(flat);
        }
    }
}
