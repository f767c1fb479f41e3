using Qed.Backing;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Concurrency;

/// <summary>Many requests that miss on one L2 slice at the same moment read that slice from the file once.</summary>
public class SingleFlightTests
{
    [Fact]
    public async Task Concurrent_misses_on_one_slice_read_it_once()
    {
        using var dir = new TempDirectory();
        string path = dir.File("sf.qed");
        QedImage.Create(path, new QedCreateOptions { Size = 64 << 20 });
        using (var writer = QedImage.Open(path))
        {
            writer.Write(new byte[] { 1, 2, 3 }, 0);
        }

        var counting = new CountingFileAccessor(HandleFileAccessor.Open(path, readOnly: true));
        await using var image = await QedImage.OpenCoreAsync(counting, new ImageOpenOptions { ReadOnly = true }, BackingChain.Start(path), useAsync: true, CancellationToken.None);
        ulong tableOffset = Qed.Tables.TableEntry.Read(ReadL1(path), 0);

        using var gate = new ManualResetEventSlim(false);
        counting.Gate = gate;
        var readers = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
        {
            byte[] buffer = new byte[512];
            await image.ReadAsync(buffer, i * 4096L);
            return buffer;
        })).ToArray();
        // Let every reader reach the cache before the one load is allowed to finish.
        await Task.Delay(300);
        gate.Set();
        var results = await Task.WhenAll(readers);

        Assert.Equal(1, counting.Reads.GetValueOrDefault((long)tableOffset));
        Assert.Equal(new byte[] { 1, 2, 3 }, results[0][..3]);
        var statistics = image.CacheStatistics;
        Assert.Equal(1, statistics.Misses);
    }

    private static byte[] ReadL1(string path)
    {
        byte[] l1 = new byte[8];
        using var stream = File.OpenRead(path);
        stream.Seek(65536, SeekOrigin.Begin);
        stream.ReadExactly(l1);
        return l1;
    }
}
