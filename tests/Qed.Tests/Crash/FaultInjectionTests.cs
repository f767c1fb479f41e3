using Qed.Backing;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash;

/// <summary>
/// A write or flush that fails under the engine reports an error to its caller and leaves the image consistent:
/// later requests on the same open image work, every other write reads back, and qemu-img finds no corruption.
/// </summary>
public class FaultInjectionTests
{
    public static TheoryData<bool, bool, bool> Modes => new()
    {
        // failFlush, tear, withBacking
        { false, false, false },
        { false, true, false },
        { false, false, true },
        { false, true, true },
        { true, false, false },
        { true, false, true },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_failed_write_or_flush_is_reported_and_leaves_the_image_consistent(bool failFlush, bool tear, bool withBacking)
    {
        for (int n = 1; n <= 16; n++)
        {
            await RunOnce(n, failFlush, tear, withBacking, async: n % 2 == 0);
        }
    }

    private static async Task RunOnce(int n, bool failFlush, bool tear, bool withBacking, bool async)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f.qed");
        const long Size = 8L << 20;
        const int ClusterSize = 4096;
        byte[] model = new byte[Size];
        if (withBacking)
        {
            byte[] backing = new byte[5_000_001];
            new Random(n).NextBytes(backing);
            File.WriteAllBytes(dir.File("b.raw"), backing);
            backing.CopyTo(model, 0);
        }
        QedImage.Create(path, new QedCreateOptions { Size = Size, ClusterSize = ClusterSize, TableSize = 2, BackingFile = withBacking ? "b.raw" : null, BackingFormat = withBacking ? "raw" : null });

        var faulty = new FaultyFileAccessor(HandleFileAccessor.Open(path, readOnly: false), failFlush ? 0 : n, failFlush ? n : 0, tear);
        var random = new Random(1000 + n);
        bool[] unknown = new bool[Size];
        int failures = 0;
        var image = await QedImage.OpenCoreAsync(faulty, new QedOpenOptions(), BackingChain.Start(path), useAsync: async, CancellationToken.None);
        try
        {
            for (int i = 0; i < 40; i++)
            {
                // Spread over several L2 tables (4 MiB each here) so new tables are allocated too.
                long offset = random.NextInt64(Size - 3 * ClusterSize);
                int length = random.Next(1, 3 * ClusterSize);
                byte[] data = new byte[length];
                random.NextBytes(data);
                bool wasFired = faulty.Fired;
                try
                {
                    if (async)
                    {
                        await image.WriteAsync(data, offset);
                    }
                    else
                    {
                        image.Write(data, offset);
                    }
                    data.CopyTo(model, offset);
                }
                catch (IOException)
                {
                    Assert.True(faulty.Fired && !wasFired, "only the injected fault may fail a write");
                    failures++;
                    Array.Fill(unknown, true, (int)offset, length);
                }
            }
            Assert.True(failures <= 1, "one injected fault fails at most one request");

            // The same open image still answers correctly after the failure.
            byte[] actual = new byte[Size];
            image.Read(actual, 0);
            AssertMatches(model, actual, unknown, $"n={n} while open");
        }
        finally
        {
            bool firedBefore = faulty.Fired;
            try
            {
                await image.DisposeAsync();
            }
            catch (IOException)
            {
                // The fault may fire in the flush at close: reported to the caller like any other.
                Assert.True(faulty.Fired && !firedBefore, "only the injected fault may fail the close");
            }
        }

        var check = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", path);
        Assert.True(check.ExitCode is 0 or 3, $"n={n}: qemu-img check: {check}");
        using var reopened = QedImage.Open(path, new QedOpenOptions { ReadOnly = true });
        byte[] after = new byte[Size];
        reopened.Read(after, 0);
        AssertMatches(model, after, unknown, $"n={n} after reopening");
    }

    private static void AssertMatches(byte[] model, byte[] actual, bool[] unknown, string context)
    {
        for (int i = 0; i < model.Length; i++)
        {
            if (!unknown[i] && model[i] != actual[i])
            {
                Assert.Fail($"{context}: byte {i} reads 0x{actual[i]:x2}, expected 0x{model[i]:x2}");
            }
        }
    }
}
