# A GPU Debug job's file (tests/gpu_jobs/test_debug.py): the test stops at the print.
def main():
    total = 0
    for i in range(3):
        total += i * 10
    answer = total + 12
    print(f"answer is {answer}")  # breakpoint (line 7)


main()
